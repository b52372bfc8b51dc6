"""Helpers for the queue's tests (imported by name: tests/queue is put on sys.path by its
conftest): ``run`` (asyncio.run with a time bound), ``wait_until``, a fake local ``deliver``,
a captured event log, a runner harness and a client TLS context without verification."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from merpati.config import Config, DeliveryConfig, LimitsConfig
from merpati.delivery.api import DeliveryReport, Envelope, RecipientOutcome
from merpati.dns.fake import FakeResolver
from merpati.queue.runner import QueueRunner
from merpati.queue.store import QueueStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class LocalSink:
    """A fake ``deliver``: records what it is given; replies per address from ``codes``."""

    codes: dict[str, int] = field(default_factory=dict)
    delivered: list[tuple[Envelope, bytes]] = field(default_factory=list)
    fail_with: type[Exception] | None = None

    async def __call__(self, envelope: Envelope, message: bytes) -> DeliveryReport:
        if self.fail_with is not None:
            raise self.fail_with("store is down")
        outcomes = []
        for r in envelope.recipients:
            code = self.codes.get(r.address, 250)
            ok = code < 400
            status = "2.0.0" if ok else ("4.2.2" if code < 500 else "5.1.1")
            outcomes.append(RecipientOutcome(r, ok, code, status, "stored" if ok else "refused"))
        if any(o.ok for o in outcomes):
            self.delivered.append((envelope, message))
        return DeliveryReport(tuple(outcomes))

    def dsns(self) -> list[bytes]:
        return [m for e, m in self.delivered if e.is_bounce]


@dataclass
class EventLog:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, name: str, **fields: Any) -> None:
        self.events.append((name, fields))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.events if n == name]


@dataclass
class Harness:
    store: QueueStore
    runner: QueueRunner
    resolver: FakeResolver
    local: LocalSink
    log: EventLog
    local_domains: set[str]

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is in flight and nothing is due now."""

        def done() -> bool:
            nxt = self.store.next_due()
            return self.runner.in_flight == 0 and (nxt is None or nxt > time.time())

        await asyncio.sleep(0.05)
        await wait_until(done, timeout)


HarnessFactory = Callable[..., Awaitable[Harness]]


def make_config(tmp: Path, port: int, **delivery: Any) -> Config:
    base: dict[str, Any] = {"port": port, "retry": (0.3,), "connect_timeout": 3.0}
    base.update(delivery)
    return Config(
        hostname="mx.a.test",
        data_dir=tmp,
        delivery=DeliveryConfig(**base),
        limits=LimitsConfig(command_timeout=5.0, data_timeout=5.0),
    )


class ThreadedSink:
    """A ``FakeSMTP`` served from its own thread and event loop, for tests whose other side is
    a ``merpati serve`` subprocess."""

    def __init__(self, sink: Any) -> None:
        import threading

        self.sink = sink
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def go() -> None:
            self.port = await self.sink.start()
            self._ready.set()

        self._loop.run_until_complete(go())
        self._loop.run_forever()

    def __enter__(self) -> ThreadedSink:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("sink did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.sink.close(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def wait_sync(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.05)
