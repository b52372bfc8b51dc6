"""Atoms, numbers and tags (rfc9051:9 atom, ATOM-CHAR, number, nz-number, tag).

Does not handle strings (see ``strings``); ``astring`` lives there because it mixes both.
"""

from __future__ import annotations

from merpati.imap.parse.cursor import Cursor, ParseError

# rfc9051:9 atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
# resp-specials. ATOM-CHAR is any CHAR (7-bit, not NUL) except those.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
# ASTRING-CHAR = ATOM-CHAR / resp-specials ("]")
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
# tag = 1*<any ASTRING-CHAR except "+">
TAG_CHARS = ASTRING_CHARS - {ord("+")}
# list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}

MAX_NUMBER = 2**32 - 1  # rfc9051:9 number is an unsigned 32-bit integer
MAX_NUMBER64 = 2**63 - 1  # rfc9051:9 number64 (MODSEQ, rfc7162:7 mod-sequence-value)


def take_chars(cur: Cursor, allowed: frozenset[int], what: str) -> bytes:
    buf = cur.buf
    start = i = cur.pos
    n = len(buf)
    while i < n and buf[i] in allowed:
        i += 1
    if i == start:
        raise ParseError(f"expected {what}")
    cur.pos = i
    return buf[start:i]


def atom(cur: Cursor) -> bytes:
    return take_chars(cur, ATOM_CHARS, "an atom")


def tag(cur: Cursor) -> bytes:
    return take_chars(cur, TAG_CHARS, "a tag")


def number(cur: Cursor, limit: int = MAX_NUMBER) -> int:
    digits = take_chars(cur, _DIGITS, "a number")
    if len(digits) > 20:
        raise ParseError("number too large")
    value = int(digits)
    if value > limit:
        raise ParseError("number too large")
    return value


def nz_number(cur: Cursor) -> int:
    value = number(cur)
    if value == 0:
        raise ParseError("expected a non-zero number")
    return value


def number64(cur: Cursor) -> int:
    return number(cur, MAX_NUMBER64)


_DIGITS = frozenset(b"0123456789")


def keyword(cur: Cursor, words: tuple[bytes, ...]) -> bytes:
    """One of ``words`` (upper-case), the longest that matches, followed by a delimiter."""
    got = atom(cur).upper()
    if got not in words:
        raise ParseError("unknown keyword")
    return got
