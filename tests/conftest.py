"""Fixtures every test area shares: a real running server, and a factory for custom ones."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from harness import MerpatiServer

ServerFactory = Callable[..., MerpatiServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """``server_factory(extra_toml="", host="127.0.0.1", start=True, **kw)`` -> MerpatiServer.
    Each call gets its own directory; every server is stopped at the end of the test."""
    made: list[MerpatiServer] = []

    def make(extra_toml: str = "", start: bool = True, **kwargs: object) -> MerpatiServer:
        base = tmp_path / f"server{len(made)}"
        base.mkdir()
        srv = MerpatiServer(base, extra_toml=extra_toml, **kwargs)  # type: ignore[arg-type]
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in made:
        srv.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> MerpatiServer:
    """A started server with default limits and no plaintext auth."""
    return server_factory()
