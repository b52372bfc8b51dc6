"""An in-process Merpati SMTP server on real loopback sockets, for tests that must look inside.

The real ``build_app`` (account store, authenticator, TLS manager, the configured mail store)
and the real ``Acceptor`` run on an event loop in a background thread; clients (smtplib,
aiosmtplib, raw sockets) connect over 127.0.0.1. ``RecordingQueue`` stands in for the
outbound queue: it keeps what was enqueued so tests can check it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from merpati.app import App
from merpati.config import Config, DeliveryConfig, LimitsConfig, ListenAddress, TLSConfig
from merpati.delivery.api import Envelope, Recipient
from merpati.delivery.deliver import make_deliverer
from merpati.delivery.intake import start_intake
from merpati.server.listeners import Acceptor
from merpati.server.runtime import build_app
from merpati.smtp.server import mx_listener, submission_listener, submissions_listener

T = TypeVar("T")
LOCAL = (ListenAddress("127.0.0.1", 0),)


class RecordingQueue:
    def __init__(self) -> None:
        self.items: list[tuple[Envelope, bytes, tuple[Recipient, ...]]] = []
        self.woken = 0

    async def enqueue(
        self, envelope: Envelope, message: bytes, recipients: tuple[Recipient, ...]
    ) -> str:
        self.items.append((envelope, message, recipients))
        return f"q{len(self.items)}"

    def wake(self) -> None:
        self.woken += 1


class InProcServer:
    def __init__(
        self,
        data_dir: Path,
        queue: bool = True,
        plaintext_auth: bool = False,
        hostname: str = "mx.test",
        show_auth_user: bool = False,
        intake: bool = False,
        **limits: Any,
    ) -> None:
        self.with_intake = intake
        self.config = Config(
            hostname=hostname,
            data_dir=data_dir,
            tls=TLSConfig(allow_plaintext_auth=plaintext_auth),
            delivery=DeliveryConfig(received_show_auth_user=show_auth_user),
            limits=dataclasses.replace(LimitsConfig(), **limits),
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.queue = RecordingQueue() if queue else None
        self.app: App = self.call(self._start())
        self.host = "127.0.0.1"

    async def _start(self) -> App:
        app = build_app(self.config)
        app.queue = self.queue
        app.deliver = make_deliverer(app)
        self.intake = await start_intake(app, agent=False) if self.with_intake else None
        self.acceptor = Acceptor(app)
        self.ports: dict[str, int] = {}
        for name, factory in (
            ("smtp", mx_listener),
            ("submission", submission_listener),
            ("submissions", submissions_listener),
        ):
            await self.acceptor.bind(name, factory(app), LOCAL)
            self.ports[name] = self.acceptor.bound[name][0][1]
        return app

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add_user(
        self, address: str, password: str = "pw-secret-1", quota: int | None = None
    ) -> str:
        accounts = self.app.accounts
        domain = address.rsplit("@", 1)[1]
        if not accounts.is_local_domain(domain):
            accounts.add_domain(domain)
        accounts.add_account(address, password, quota)
        self.call(self.app.mailstore.create_account(address))
        return password

    def inbox(self, account: str) -> list[bytes]:
        async def read() -> list[bytes]:
            box = self.app.mailstore.mailbox(account)
            return [await box.read("INBOX", m.uid) for m in await box.messages("INBOX")]

        return self.call(read())

    def log_lines(self) -> list[str]:
        return []

    def stop(self) -> None:
        async def stop() -> None:
            self.app.stopping.set()
            self.acceptor.stop_accepting()
            await self.acceptor.drain(2)
            if self.intake is not None:
                await self.intake.stop()
            await self.app.mailstore.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    @staticmethod
    def tls_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


class RawClient:
    """A line-level SMTP client over a real socket, for byte-exact tests."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One complete (possibly multi-line) reply, as text."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; got {lines!r} {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return "\r\n".join(lines)

    def cmd(self, line: bytes | str) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()
