"""IMAP commands as frozen value objects, as ``merpati.imap.parse.command`` produces them.

Mailbox names stay bytes here: whether they are modified UTF-7 (rfc3501:5.1.3) or UTF-8
(rfc9051:5.1, rfc6855) depends on what the session has ENABLEd, so the session decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from merpati.imap.parse.fetchatt import FetchAtt
from merpati.imap.parse.searchkey import SearchProgram
from merpati.imap.parse.seqset import SequenceSet


@dataclass(frozen=True, slots=True)
class Command:
    tag: bytes
    name: str  # upper-case command name, without "UID "


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    mechanism: str
    initial: bytes | None  # rfc4959 SASL-IR initial response, as sent ("=" is empty)


@dataclass(frozen=True, slots=True)
class Login(Command):
    user: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id(Command):
    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True, slots=True)
class Qresync:
    """rfc7162:3.2.5 QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None  # None: all
    seq_match: tuple[SequenceSet, SequenceSet] | None = None  # (message numbers, UIDs)


@dataclass(frozen=True, slots=True)
class Select(Command):
    mailbox: bytes
    condstore: bool
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class MailboxCommand(Command):
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT: one mailbox argument."""

    mailbox: bytes
    special_use: tuple[str, ...] = ()  # rfc6154:3 CREATE ... (USE (\Sent))


@dataclass(frozen=True, slots=True)
class Rename(Command):
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class ListCommand(Command):
    """LIST (rfc5258 LIST-EXTENDED, rfc5819 LIST-STATUS, rfc6154) and LSUB."""

    reference: bytes
    patterns: tuple[bytes, ...]
    select_opts: tuple[str, ...] = ()
    return_opts: tuple[str, ...] = ()
    status_atts: tuple[str, ...] = ()
    extended: bool = False  # the client used any LIST-EXTENDED syntax


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: bytes
    atts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: bytes
    flags: tuple[str, ...]
    date: tuple[float, int] | None
    data: bytes
    binary: bool  # sent as literal8 (rfc3516:4.4)


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: bytes


@dataclass(frozen=True, slots=True)
class Search(Command):
    uid: bool
    program: SearchProgram


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    uid: bool
    seqset: SequenceSet
    atts: tuple[FetchAtt, ...]
    changedsince: int | None = None  # rfc7162:3.1.4.1
    vanished: bool = False  # rfc7162:3.2.6


@dataclass(frozen=True, slots=True)
class Store(Command):
    uid: bool
    seqset: SequenceSet
    mode: str  # "", "+", "-"
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None  # rfc7162:3.1.3


@dataclass(frozen=True, slots=True)
class CopyMove(Command):
    """COPY and MOVE (rfc6851)."""

    uid: bool
    seqset: SequenceSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    seqset: SequenceSet
