"""Fixtures for the queue's tests: a self-signed TLS context for fake servers, and a harness
that wires a runner to a fake resolver, a fake local ``deliver`` and a captured event log."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qhelpers import (
    EventLog,
    Harness,
    HarnessFactory,
    LocalSink,
    client_tls,
    make_cert,
    make_config,
)

from merpati.dns.fake import FakeResolver
from merpati.queue.runner import QueueRunner, RunnerDeps
from merpati.queue.store import QueueStore


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert_files)
    return ctx


@pytest.fixture
def harness(tmp_path: Path) -> HarnessFactory:
    """``h = await harness(port, **delivery_config)``; the caller stops ``h.runner``."""

    async def make(port: int, *, tls: bool = True, **delivery: Any) -> Harness:
        config = make_config(tmp_path, port, **delivery)
        store = QueueStore.open(tmp_path)
        resolver = FakeResolver(
            mx_records={"b.test": [(10, "mx.b.test")], "c.test": [(10, "mx.c.test")]},
            a_records={"mx.b.test": ["127.0.0.1"], "mx.c.test": ["127.0.0.1"]},
        )
        local = LocalSink()
        log = EventLog()
        local_domains = {"a.test"}
        deps = RunnerDeps(
            config=config,
            resolver=resolver,
            is_local=lambda d: d in local_domains,
            deliver=lambda: local,
            log=log,
            tls_context=client_tls if tls else None,
            poll_interval=0.05,
        )
        runner = QueueRunner(store, deps)
        return Harness(store, runner, resolver, local, log, local_domains)

    return make
