"""A sans-I/O harness for the IMAP session: feed bytes, collect response bytes.

Runs the real ``Session`` over the real in-memory mail store; the credential check is a small
table (the real Authenticator is exercised by the socket tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from merpati.imap.searchcache import SearchFieldCache
from merpati.imap.session import Session, SessionConfig
from merpati.mailstore.memory import MemoryMailStore

T = TypeVar("T")
USERS = {"alice@example.org": "alice-pw", "bob@example.org": "bob-pw"}


class Client:
    def __init__(
        self,
        store: MemoryMailStore | None = None,
        config: SessionConfig | None = None,
        tls: bool = True,
        field_cache: SearchFieldCache | None = None,
    ) -> None:
        self.store = store or MemoryMailStore()
        self.out: list[bytes] = []

        async def verify(user: str, password: str) -> str | None:
            return user if USERS.get(user) == password else None

        async def sink(data: bytes) -> None:
            self.out.append(data)

        self.session = Session(
            config or SessionConfig(max_line=8192, max_literal=100_000, bad_commands=10),
            verify,
            self.store.mailbox,
            sink,
            tls_active=tls,
            field_cache=field_cache,
        )
        run(self.session.start())
        self.greeting = self.take()

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def send(self, data: bytes) -> bytes:
        run(self.session.receive(data))
        return self.take()

    def cmd(self, line: str | bytes) -> bytes:
        raw = line.encode() if isinstance(line, str) else line
        return self.send(raw + b"\r\n")

    def login(self, user: str = "alice@example.org") -> Client:
        assert b"OK" in self.cmd(f"l LOGIN {user} {USERS[user]}")
        return self

    def select(self, box: str = "INBOX") -> bytes:
        out = self.cmd(f"s SELECT {box}")
        assert b"s OK" in out, out
        return out


_loop = asyncio.new_event_loop()


def run(aw: Awaitable[T]) -> T:
    return _loop.run_until_complete(aw)


def append(
    store: MemoryMailStore,
    account: str,
    data: bytes,
    folder: str = "INBOX",
    flags: tuple[str, ...] = (),
) -> int:
    return run(store.mailbox(account).append(folder, data, flags)).uid


Factory = Callable[..., Client]
