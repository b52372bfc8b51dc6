"""Fixtures for mail store tests: ``backend`` runs a test body against each backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from merpati.mailstore.memory import MemoryMailStore

Body = Callable[[Any], Awaitable[None]]
Runner = Callable[..., None]
BACKENDS = ["memory", "embedded"]


def make_store(kind: str, path: Path, quota: dict[str, int] | None = None) -> Any:
    limits = quota if quota is not None else {}
    if kind == "memory":
        return MemoryMailStore(limits.get)
    from merpati.mailstore.embedded import EmbeddedMailStore

    return EmbeddedMailStore(path, limits.get)


@pytest.fixture(params=BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    """``run(body, quota=None)`` runs ``await body(store)`` on a fresh store, then closes it."""
    kind: str = request.param
    if kind == "embedded":
        pytest.importorskip("merpati.mailstore.embedded")

    def runner(body: Body, quota: dict[str, int] | None = None) -> None:
        async def main() -> None:
            store = make_store(kind, tmp_path / "data", quota)
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())

    yield runner
