"""SEARCH keys (rfc9051:6.4.4, rfc3501:6.4.4, rfc7162:3.1.5 MODSEQ) and the SEARCH program
with its RETURN options (rfc4731 ESEARCH) and CHARSET.

Produces a tree of ``SearchKey`` nodes; evaluation lives in ``merpati.imap.search``. Nesting is
bounded (``MAX_DEPTH``) so a hostile ``NOT NOT NOT ...`` cannot exhaust the stack.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from merpati.imap.parse.atoms import ATOM_CHARS, atom, number64, take_chars
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError
from merpati.imap.parse.dates import date
from merpati.imap.parse.seqset import SequenceSet, sequence_set
from merpati.imap.parse.strings import astring

MAX_DEPTH = 50
MAX_KEYS = 1000

NO_ARG = frozenset(
    {"ALL", "ANSWERED", "DELETED", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN", "UNANSWERED",
     "UNDELETED", "UNFLAGGED", "UNSEEN", "DRAFT", "UNDRAFT"}
)  # fmt: skip
TEXT_ARG = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_ARG = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
SIZE_ARG = frozenset({"LARGER", "SMALLER"})
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})


@dataclass(frozen=True, slots=True)
class SearchKey:
    name: str  # the key's name, or "AND" for a parenthesised list, "SEQ" for a sequence set
    text: bytes | None = None  # BCC/BODY/.../HEADER value
    field: bytes | None = None  # HEADER field name
    day: dt.date | None = None
    number: int | None = None  # LARGER/SMALLER/MODSEQ
    flag: str | None = None  # KEYWORD/UNKEYWORD
    seqset: SequenceSet | None = None  # SEQ and UID
    children: tuple[SearchKey, ...] = ()  # AND, OR (two), NOT (one)


@dataclass(frozen=True, slots=True)
class SearchProgram:
    key: SearchKey
    charset: str | None
    returns: tuple[str, ...] | None  # None: plain SEARCH; () or options: ESEARCH
    uses_modseq: bool


def search_key(cur: Cursor, depth: int = 0) -> SearchKey:
    if depth > MAX_DEPTH:
        raise LimitExceeded("search too deeply nested")
    c = cur.peek()
    if c == b"(":
        cur.pos += 1
        keys = [search_key(cur, depth + 1)]
        while not cur.accept(b")"):
            cur.sp()
            keys.append(search_key(cur, depth + 1))
            if len(keys) > MAX_KEYS:
                raise LimitExceeded("too many search keys")
        return SearchKey("AND", children=tuple(keys))
    if c.isdigit() or c in (b"*", b"$"):
        return SearchKey("SEQ", seqset=sequence_set(cur))
    name = atom(cur).upper().decode("ascii")
    if name in NO_ARG:
        return SearchKey(name)
    cur.sp()
    if name in TEXT_ARG:
        return SearchKey(name, text=astring(cur))
    if name in DATE_ARG:
        return SearchKey(name, day=date(cur))
    if name in SIZE_ARG:
        return SearchKey(name, number=number64(cur))
    if name in ("KEYWORD", "UNKEYWORD"):
        return SearchKey(name, flag=take_chars(cur, ATOM_CHARS, "a keyword").decode("ascii"))
    if name == "HEADER":
        field = astring(cur)
        cur.sp()
        return SearchKey(name, field=field, text=astring(cur))
    if name == "UID":
        return SearchKey(name, seqset=sequence_set(cur))
    if name == "NOT":
        return SearchKey(name, children=(search_key(cur, depth + 1),))
    if name == "OR":
        a = search_key(cur, depth + 1)
        cur.sp()
        return SearchKey(name, children=(a, search_key(cur, depth + 1)))
    if name in ("OLDER", "YOUNGER"):  # rfc5032 WITHIN
        return SearchKey(name, number=number64(cur))
    if name == "MODSEQ":
        # rfc7162:3.1.5 MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        if cur.peek() == b'"':
            astring(cur)
            cur.sp()
            kind = atom(cur).upper()
            if kind not in (b"PRIV", b"SHARED", b"ALL"):
                raise ParseError("bad MODSEQ entry type")
            cur.sp()
        return SearchKey(name, number=number64(cur))
    raise ParseError("unknown search key")


def search_program(cur: Cursor) -> SearchProgram:
    """``[RETURN (...)] [CHARSET x] key *(SP key)`` after ``SEARCH SP``."""
    returns: tuple[str, ...] | None = None
    charset: str | None = None
    if cur.startswith_ci(b"RETURN "):
        cur.pos += 7
        cur.expect(b"(")
        opts: list[str] = []
        while not cur.accept(b")"):
            if opts:
                cur.sp()
            opt = atom(cur).upper().decode("ascii")
            if opt not in RETURN_OPTIONS:
                raise ParseError("unknown RETURN option")
            opts.append(opt)
        returns = tuple(opts)
        cur.sp()
    if cur.startswith_ci(b"CHARSET "):
        cur.pos += 8
        charset = astring(cur).decode("ascii", "replace").upper()
        cur.sp()
    keys = [search_key(cur)]
    while not cur.at_end():
        cur.sp()
        keys.append(search_key(cur))
        if len(keys) > MAX_KEYS:
            raise LimitExceeded("too many search keys")
    key = keys[0] if len(keys) == 1 else SearchKey("AND", children=tuple(keys))
    return SearchProgram(key, charset, returns, _uses_modseq(key))


def _uses_modseq(key: SearchKey) -> bool:
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.children)
