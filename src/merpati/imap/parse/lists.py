"""Parenthesised lists: of atoms (STATUS attributes, LIST options, ENABLE), of list-mailbox
patterns (rfc9051:9 list-mailbox), and the ID parameter list (rfc2971:3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from merpati.imap.parse.atoms import LIST_CHARS, atom, take_chars
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError
from merpati.imap.parse.strings import nstring, string

MAX_ITEMS = 100
T = TypeVar("T")


def paren_list(cur: Cursor, item: Callable[[Cursor], T], allow_empty: bool = True) -> list[T]:
    cur.expect(b"(")
    out: list[T] = []
    if cur.accept(b")"):
        if not allow_empty:
            raise ParseError("empty list")
        return out
    while True:
        out.append(item(cur))
        if len(out) > MAX_ITEMS:
            raise LimitExceeded("list too long")
        if cur.accept(b")"):
            return out
        cur.sp()


def upper_atom(cur: Cursor) -> str:
    return atom(cur).upper().decode("ascii")


def atom_list(cur: Cursor, allow_empty: bool = True) -> tuple[str, ...]:
    return tuple(paren_list(cur, upper_atom, allow_empty))


def list_mailbox(cur: Cursor) -> bytes:
    """rfc9051:9 list-mailbox = 1*list-char / string."""
    if cur.peek() in (b'"', b"{"):
        return string(cur)
    return take_chars(cur, LIST_CHARS, "a mailbox pattern")


def id_params(cur: Cursor) -> tuple[tuple[bytes, bytes | None], ...] | None:
    if cur.startswith_ci(b"NIL"):
        cur.pos += 3
        return None

    def pair(c: Cursor) -> tuple[bytes, bytes | None]:
        key = string(c)
        c.sp()
        return key, nstring(c)

    # rfc2971:3.3 at most 30 field-value pairs; we allow the general list bound.
    return tuple(paren_list(cur, pair))
