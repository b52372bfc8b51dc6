"""A deterministic driver for the sans-I/O POP3 session: carries out its actions against a
dict of messages, so that tests are byte transcripts (bytes in, bytes out)."""

from __future__ import annotations

from dataclasses import dataclass, field

from merpati.mailstore.api import MessageInfo
from merpati.pop3.session import (
    NEED_DATA,
    Close,
    Commit,
    FetchMessage,
    MarkSeen,
    OpenMaildrop,
    Pop3Session,
    Send,
    StartTLS,
    Verify,
)

ACCOUNT = "alice@example.org"
PASSWORD = "correct horse"


def info(uid: int, data: bytes, flags: frozenset[str] = frozenset()) -> MessageInfo:
    return MessageInfo(
        uid=uid,
        modseq=uid,
        flags=flags,
        internaldate=0.0,
        internaldate_tz=0,
        size=len(data),
        uidl=f"uidl-{uid:04d}",
    )


@dataclass
class Driver:
    messages: dict[int, bytes] = field(default_factory=dict)
    seen_flags: frozenset[int] = frozenset()
    tls_active: bool = False
    tls_available: bool = True
    allow_plaintext_auth: bool = True
    max_errors: int = 10
    in_use: bool = False
    gone: frozenset[int] = frozenset()  # uids "expunged through IMAP" after login
    unreadable: frozenset[int] = frozenset()  # uids whose read fails in the store
    store_fails: bool = False  # the store refuses to open the maildrop / to commit

    def __post_init__(self) -> None:
        self.session = Pop3Session(
            hostname="mail.example.org",
            tls_active=self.tls_active,
            tls_available=self.tls_available,
            allow_plaintext_auth=self.allow_plaintext_auth,
            max_errors=self.max_errors,
        )
        self.output = bytearray(self.session.greeting())
        self.verified: list[tuple[str, str]] = []
        self.marked_seen: list[int] = []
        self.commits: list[tuple[int, ...]] = []
        self.closed: str | None = None
        self.tls_upgrades = 0

    def feed(self, data: bytes) -> bytes:
        """Feed bytes, run every action; return what the session wrote meanwhile."""
        start = len(self.output)
        self.session.receive(data)
        self.pump()
        return bytes(self.output[start:])

    def feed_bytewise(self, data: bytes) -> bytes:
        start = len(self.output)
        for i in range(len(data)):
            self.session.receive(data[i : i + 1])
            self.pump()
        return bytes(self.output[start:])

    def pump(self) -> None:
        s = self.session
        for _ in range(10_000):
            action = s.next_action()
            if action is NEED_DATA:
                return
            if isinstance(action, Send):
                self.output += action.data
            elif isinstance(action, Verify):
                self.verified.append((action.username, action.password))
                ok = action.username.lower() == ACCOUNT and action.password == PASSWORD
                s.verified(ACCOUNT if ok else None)
            elif isinstance(action, OpenMaildrop):
                if self.in_use:
                    s.maildrop_in_use()
                elif self.store_fails:
                    s.maildrop_failed()
                else:
                    infos = [
                        info(
                            uid,
                            data,
                            frozenset({"\\Seen"}) if uid in self.seen_flags else frozenset(),
                        )
                        for uid, data in sorted(self.messages.items())
                    ]
                    s.maildrop_opened(action.account, infos)
            elif isinstance(action, FetchMessage) and action.uid in self.unreadable:
                s.message_unreadable()
            elif isinstance(action, FetchMessage):
                s.message_fetched(None if action.uid in self.gone else self.messages[action.uid])
            elif isinstance(action, MarkSeen):
                self.marked_seen.append(action.uid)
            elif isinstance(action, StartTLS):
                self.tls_upgrades += 1
                s.tls_started()
            elif isinstance(action, Commit) and self.store_fails:
                s.commit_failed()
            elif isinstance(action, Commit):
                self.commits.append(action.uids)
                for uid in action.uids:
                    del self.messages[uid]
                s.committed(len(action.uids))
            elif isinstance(action, Close):
                self.closed = action.reason
                return
        raise AssertionError("the session produced actions without end")

    def login(self) -> bytes:
        return self.feed(f"USER {ACCOUNT}\r\nPASS {PASSWORD}\r\n".encode())
