"""Serialising values the way the grammar wants them (rfc9051:4): atoms, quoted strings,
literals, NIL, number lists. Responses are built from these.

Quoted strings carry only printable ASCII (plus UTF-8 when the client enabled UTF-8,
rfc6855:3); anything else (CR, LF, NUL, 8-bit without UTF-8, or very long text) is a literal.
"""

from __future__ import annotations

from merpati.imap.parse.atoms import ATOM_CHARS

NIL = b"NIL"
_QUOTE_MAX = 1024  # longer strings go as literals; clients handle both


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > _QUOTE_MAX:
        return False
    if utf8:
        if any(c < 0x20 or c == 0x7F for c in data):
            return False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    return all(0x20 <= c < 0x7F for c in data)


def string(data: bytes, utf8: bool = False) -> bytes:
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(data: bytes | None, utf8: bool = False) -> bytes:
    return NIL if data is None else string(data, utf8)


def astring(data: bytes, utf8: bool = False) -> bytes:
    if data and all(c in ATOM_CHARS for c in data):
        return data
    return string(data, utf8)


def literal(data: bytes, binary: bool = False) -> bytes:
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(data) + data
