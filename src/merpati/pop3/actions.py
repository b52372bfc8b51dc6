"""What the POP3 session asks its transport to do: small frozen values, no behaviour.

Each action but ``Send``, ``MarkSeen`` and ``Close`` expects an answer through the session's
completion method named in its docstring before the transport asks for the next action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "NEED_DATA",
    "Action",
    "Close",
    "Commit",
    "FetchMessage",
    "MarkSeen",
    "NeedData",
    "OpenMaildrop",
    "Send",
    "StartTLS",
    "Verify",
]


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Verify:
    """Check a password (through the shared throttle); answer with ``verified``."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class OpenMaildrop:
    """Lock the account's maildrop and snapshot its INBOX; answer with ``maildrop_opened``,
    ``maildrop_in_use`` or ``maildrop_failed``."""

    account: str


@dataclass(frozen=True, slots=True)
class FetchMessage:
    """Read the stored bytes of INBOX message ``uid``; answer with ``message_fetched``."""

    uid: int
    whole: bool  # RETR (True) or TOP (False)
    number: int = 0  # its message number in this session


@dataclass(frozen=True, slots=True)
class MarkSeen:
    """Add \\Seen to INBOX message ``uid`` (after RETR). No answer expected."""

    uid: int


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the connection now; answer with ``tls_started`` or ``tls_failed``."""


@dataclass(frozen=True, slots=True)
class Commit:
    """rfc1939:6 the UPDATE state: flag ``uids`` \\Deleted and expunge exactly those; answer
    with ``committed(number removed)`` or ``commit_failed``."""

    account: str
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection (after the Send actions before it). Always the last action."""

    reason: str


class NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

Action = Send | Verify | OpenMaildrop | FetchMessage | MarkSeen | StartTLS | Commit | Close
