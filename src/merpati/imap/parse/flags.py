"""Flags and flag lists (rfc9051:9 flag, flag-list, flag-keyword, store-att-flags).

System flags are case-insensitive and come back in their canonical spelling; keywords keep the
client's spelling (rfc9051:2.3.2 they compare case-insensitively; the store decides). \\Recent
is not a flag a client may set (rfc3501:2.3.2) and is refused.
"""

from __future__ import annotations

from merpati.imap.parse.atoms import ATOM_CHARS, atom, take_chars
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError

SYSTEM_FLAGS = {
    b"\\SEEN": "\\Seen",
    b"\\ANSWERED": "\\Answered",
    b"\\FLAGGED": "\\Flagged",
    b"\\DELETED": "\\Deleted",
    b"\\DRAFT": "\\Draft",
}
MAX_FLAGS = 100  # flags in one list; more is abuse, not a mail client


def flag(cur: Cursor) -> str:
    if cur.accept(b"\\"):
        name = b"\\" + atom(cur)
        canon = SYSTEM_FLAGS.get(name.upper())
        if canon is None:
            # rfc9051:9 flag-extension: unknown \-flags are reserved; refuse rather than store.
            raise ParseError("unknown system flag")
        return canon
    return take_chars(cur, ATOM_CHARS, "a flag").decode("ascii")


def flag_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    out: list[str] = []
    if cur.accept(b")"):
        return ()
    while True:
        out.append(flag(cur))
        if len(out) > MAX_FLAGS:
            raise LimitExceeded("too many flags")
        if cur.accept(b")"):
            return tuple(out)
        cur.sp()


def store_flags(cur: Cursor) -> tuple[str, ...]:
    """``(flag ...)`` or ``flag *(SP flag)`` (rfc9051:9 store-att-flags)."""
    if cur.peek() == b"(":
        return flag_list(cur)
    out = [flag(cur)]
    while cur.peek() == b" " and cur.peek(2) != b" (" and not cur.at_end():
        save = cur.pos
        cur.sp()
        try:
            out.append(flag(cur))
        except ParseError:
            cur.pos = save
            break
        if len(out) > MAX_FLAGS:
            raise LimitExceeded("too many flags")
    return tuple(out)
