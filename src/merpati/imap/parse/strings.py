"""Strings: quoted (with ``\\"`` and ``\\\\`` escapes), literals ``{n}``, ``{n+}`` (rfc7888
LITERAL+/LITERAL-), ``~{n}`` (rfc3516 literal8), and the rules built from them: string,
astring, nstring (rfc9051:9).

The literal's octets are already inline in the buffer (the framer waited for them and checked
their size); here we only slice them out. Does not decode mailbox names (see ``mutf7``).
"""

from __future__ import annotations

from merpati.imap.parse.atoms import ASTRING_CHARS, take_chars
from merpati.imap.parse.cursor import Cursor, ParseError


def quoted(cur: Cursor) -> bytes:
    buf = cur.buf
    if buf[cur.pos : cur.pos + 1] != b'"':
        raise ParseError("expected a quoted string")
    i = cur.pos + 1
    n = len(buf)
    out = bytearray()
    while i < n:
        c = buf[i]
        if c == 0x22:  # closing DQUOTE
            cur.pos = i + 1
            return bytes(out)
        if c == 0x5C:  # rfc9051:9 quoted-specials may only be escaped
            if i + 1 < n and buf[i + 1] in (0x22, 0x5C):
                out.append(buf[i + 1])
                i += 2
                continue
            raise ParseError("bad escape in a quoted string")
        if c in (0x0D, 0x0A, 0x00):
            raise ParseError("CR, LF or NUL in a quoted string")
        out.append(c)
        i += 1
    raise ParseError("unterminated quoted string")


def literal(cur: Cursor, allow_binary: bool = False) -> bytes:
    """``{n}CRLF`` or ``{n+}CRLF`` (``~{n}`` too when ``allow_binary``), then n octets."""
    buf = cur.buf
    binary = False
    if allow_binary and buf[cur.pos : cur.pos + 2] == b"~{":
        binary = True
        cur.pos += 1
    if buf[cur.pos : cur.pos + 1] != b"{":
        raise ParseError("expected a literal")
    close = buf.find(b"}", cur.pos)
    if close < 0 or close - cur.pos > 22:
        raise ParseError("bad literal length")
    inner = buf[cur.pos + 1 : close]
    if inner.endswith(b"+"):
        inner = inner[:-1]
    if not inner.isdigit():
        raise ParseError("bad literal length")
    size = int(inner)
    if buf[close + 1 : close + 3] != b"\r\n":
        raise ParseError("a literal length must end the line")
    start = close + 3
    if start + size > len(buf):
        raise ParseError("literal shorter than announced")
    data = buf[start : start + size]
    # rfc9051:4.3 a literal (not literal8) must not contain NUL.
    if not binary and b"\x00" in data:
        raise ParseError("NUL in a literal")
    cur.pos = start + size
    return data


def string(cur: Cursor) -> bytes:
    c = cur.peek()
    if c == b'"':
        return quoted(cur)
    if c == b"{":
        return literal(cur)
    raise ParseError("expected a string")


def astring(cur: Cursor) -> bytes:
    c = cur.peek()
    if c in (b'"', b"{"):
        return string(cur)
    return take_chars(cur, ASTRING_CHARS, "a string or atom")


def nstring(cur: Cursor) -> bytes | None:
    if cur.startswith_ci(b"NIL"):
        cur.pos += 3
        return None
    return string(cur)
