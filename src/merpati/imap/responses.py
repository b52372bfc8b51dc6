"""Status responses and their serialisation (rfc9051:7.1), and the one place where errors
become wire replies: ``Refused`` (a handler's NO/BAD) and the mail store's errors.

Response text is always ours; exception text never reaches a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from merpati.mailstore.api import (
    FolderExists,
    FolderNotEmpty,
    InvalidName,
    MailStoreError,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
    StorageFailure,
    TooManyKeywords,
)


@dataclass(frozen=True, slots=True)
class Result:
    """A tagged status: OK, NO or BAD, an optional response code, and human text."""

    status: str
    code: bytes | None
    text: str

    def line(self, tag: bytes) -> bytes:
        return status_line(tag, self.status, self.code, self.text)


def status_line(tag: bytes, status: str, code: bytes | None, text: str) -> bytes:
    middle = b" [" + code + b"] " if code else b" "
    return tag + b" " + status.encode() + middle + text.encode("utf-8") + b"\r\n"


def ok(text: str, code: bytes | None = None) -> Result:
    return Result("OK", code, text)


class Refused(Exception):
    """Raised by a handler to end its command with NO or BAD."""

    def __init__(self, status: str, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self.result = Result(status, code, text)


def no(text: str, code: bytes | None = None) -> Refused:
    return Refused("NO", text, code)


def bad(text: str, code: bytes | None = None) -> Refused:
    return Refused("BAD", text, code)


def store_error(exc: MailStoreError, missing_code: bytes = b"NONEXISTENT") -> Result:
    """rfc5530 response codes for the mail store's errors. ``missing_code`` is TRYCREATE for
    APPEND, COPY and MOVE (rfc9051:6.3.12)."""
    if isinstance(exc, NoSuchFolder):
        return Result("NO", missing_code, "No such mailbox")
    if isinstance(exc, FolderExists):
        return Result("NO", b"ALREADYEXISTS", "Mailbox already exists")
    if isinstance(exc, QuotaExceeded):
        return Result("NO", b"OVERQUOTA", "Quota exceeded")
    if isinstance(exc, TooManyKeywords):  # rfc5530:3 "the number of flags used in a mailbox"
        return Result("NO", b"LIMIT", "Too many keywords in this mailbox")
    if isinstance(exc, InvalidName):
        return Result("NO", b"CANNOT", "That mailbox name or operation is not allowed")
    if isinstance(exc, FolderNotEmpty):
        # rfc9051:7.1 HASCHILDREN: DELETE refused because of inferior names
        return Result("NO", b"HASCHILDREN", "Mailbox has children; delete them first")
    if isinstance(exc, NoSuchMessage):
        return Result("NO", b"EXPUNGEISSUED", "Some messages were expunged meanwhile")
    if isinstance(exc, StorageFailure):  # rfc5530:3 a temporary failure; nothing changed
        return Result("NO", b"UNAVAILABLE", "The mail store is unavailable; try again")
    return Result("NO", b"SERVERBUG", "The mail store could not do that")
