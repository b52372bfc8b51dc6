"""An in-process POP3 server for fast socket tests: the real listeners, acceptor, auth,
TLS and the in-memory mail store, on an event loop in a background thread, bound to
127.0.0.1 on free ports. Tests drive it with poplib from the test thread."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import poplib
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from merpati.accounts.store import AccountStore
from merpati.app import App
from merpati.auth.credentials import Authenticator
from merpati.config import Config, LimitsConfig, ListenAddress, ListenConfig, TLSConfig
from merpati.logging import EventLog
from merpati.mailstore import open_mailstore
from merpati.mailstore.api import MailStore, MessageInfo
from merpati.mailstore.memory import MemoryMailStore
from merpati.metrics import Metrics
from merpati.pop3.server import pop3_listener, pop3s_listener
from merpati.server.listeners import Acceptor
from merpati.tls import TLSManager

T = TypeVar("T")

PASSWORD = "pop-secret-1"


def make_message(n: int, size: int = 0, subject: str = "") -> bytes:
    head = (
        f"From: sender@example.net\r\nTo: alice@example.org\r\n"
        f"Subject: {subject or f'message {n}'}\r\nMessage-ID: <{n}@example.net>\r\n\r\n"
    ).encode()
    body = b"Hello.\r\n.leading dot line\r\n\xc3\xa9t\xc3\xa9\r\n"
    if size > len(head) + len(body):
        filler = size - len(head) - len(body)
        line = b"x" * 76 + b"\r\n"
        body += (line * (filler // len(line) + 1))[:filler]
        if not body.endswith(b"\r\n"):
            body = body[:-2] + b"\r\n"
    return head + body


class InProcessServer:
    def __init__(
        self, base: Path, plaintext: bool = True, store: str = "embedded", **limits: Any
    ) -> None:
        """``store``: "embedded" (Maildir + SQLite in the data dir, what `serve` uses) or
        "memory"."""
        self.base = base
        data_dir = base / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        off: tuple[ListenAddress, ...] = ()
        self.config = Config(
            hostname="mail.example.org",
            data_dir=data_dir,
            listen=ListenConfig(
                smtp=off,
                submission=off,
                submissions=off,
                imap=off,
                imaps=off,
                http=off,
                pop3=(ListenAddress("127.0.0.1", 0),),
                pop3s=(ListenAddress("127.0.0.1", 0),),
            ),
            tls=TLSConfig(allow_plaintext_auth=plaintext),
            limits=dataclasses.replace(LimitsConfig(), **limits),
        )
        self.log = io.StringIO()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.accounts = self.call(lambda: AccountStore.open(data_dir))
        self.mailstore: MailStore
        if store == "memory":
            self.mailstore = MemoryMailStore(self.accounts.quota)
        else:
            self.mailstore = open_mailstore(self.config, self.accounts.quota)
        self.app = self.run(self._build())
        self.acceptor = Acceptor(self.app)
        self.run(self.acceptor.bind("pop3", pop3_listener(self.app), self.config.listen.pop3))
        self.run(self.acceptor.bind("pop3s", pop3s_listener(self.app), self.config.listen.pop3s))
        self.ports = {name: addrs[0][1] for name, addrs in self.acceptor.bound.items()}

    async def _build(self) -> App:
        return App(
            config=self.config,
            accounts=self.accounts,
            auth=Authenticator(self.accounts, free_failures=5),
            mailstore=self.mailstore,
            tls=TLSManager(self.config),
            metrics=Metrics(),
            log=EventLog(stream=self.log),
        )

    # -- running things on the server's loop -----------------------------------------------
    def run(self, coro: Awaitable[T], timeout: float = 20) -> T:
        async def wrap() -> T:
            return await coro

        fut: Future[T] = asyncio.run_coroutine_threadsafe(wrap(), self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self.run(wrap())

    def add_user(self, address: str, password: str = PASSWORD) -> str:
        domain = address.rsplit("@", 1)[1]

        def add() -> None:
            if not self.accounts.is_local_domain(domain):
                self.accounts.add_domain(domain)
            self.accounts.add_account(address, password)

        self.call(add)
        self.run(self.mailstore.create_account(address))
        return password

    def append(self, account: str, data: bytes, flags: tuple[str, ...] = ()) -> int:
        result = self.run(self.mailstore.mailbox(account).append("INBOX", data, flags))
        return result.uid

    def inbox(self, account: str) -> list[MessageInfo]:
        return self.run(self.mailstore.mailbox(account).messages("INBOX"))

    def stop(self) -> None:
        self.acceptor.stop_accepting()
        try:
            self.run(self.acceptor.drain(1.0))
        except TypeError:
            # CPython 3.11 asyncio.Server can run _wakeup twice when a connection detaches
            # after close() (fixed in 3.12); it only affects this teardown.
            pass
        self.run(self.mailstore.close())
        self.call(self.accounts.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # -- clients ---------------------------------------------------------------------------
    def pop3(self, timeout: float = 10) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=timeout)

    def pop3s(self, timeout: float = 10) -> poplib.POP3_SSL:
        return poplib.POP3_SSL(
            "127.0.0.1", self.ports["pop3s"], timeout=timeout, context=client_tls()
        )

    def login(self, user: str, password: str = PASSWORD) -> poplib.POP3:
        client = self.pop3s()
        client.user(user)
        client.pass_(password)
        return client


def client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth_plain(client: poplib.POP3, user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode())
    return client._shortcmd("AUTH PLAIN " + token.decode())
