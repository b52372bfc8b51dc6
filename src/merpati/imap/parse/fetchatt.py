"""FETCH attributes (rfc9051:9 fetch-att, section, partial; rfc3501:9 RFC822.*; rfc3516
BINARY; rfc7162:3.1.4 MODSEQ) and the ALL/FAST/FULL macros.

``FetchAtt.response_name`` is the name the server echoes in the FETCH response (rfc9051:7.5.2:
BODY.PEEK answers as BODY, and a partial answers with its origin only).
"""

from __future__ import annotations

from dataclasses import dataclass

from merpati.imap.parse.atoms import ASTRING_CHARS, number, nz_number
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError
from merpati.imap.parse.strings import astring

SIMPLE = (
    b"ENVELOPE", b"FLAGS", b"INTERNALDATE", b"RFC822.HEADER", b"RFC822.SIZE", b"RFC822.TEXT",
    b"RFC822", b"BODYSTRUCTURE", b"UID", b"MODSEQ",
)  # fmt: skip
MACROS = {
    b"ALL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"),
    b"FAST": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"),
    b"FULL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"),
}
MAX_PART_DEPTH = 100
MAX_FIELDS = 200


@dataclass(frozen=True, slots=True)
class FetchAtt:
    name: str  # "FLAGS", "BODY" (with a section), "BODY" alone (structure), "BINARY", ...
    section: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[bytes, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = False
    has_section: bool = False  # "BODY[...]" as opposed to plain "BODY"

    def section_bytes(self) -> bytes:
        parts = [".".join(str(p) for p in self.section).encode()] if self.section else []
        if self.text:
            parts.append(self.text.encode())
        spec = b".".join(parts)
        if self.fields:
            spec += b" (" + b" ".join(_field_out(f) for f in self.fields) + b")"
        return b"[" + spec + b"]"

    def response_name(self) -> bytes:
        if not self.has_section:
            return self.name.encode()
        out = self.name.encode() + self.section_bytes()
        if self.partial is not None:
            out += b"<%d>" % self.partial[0]
        return out

    @property
    def sets_seen(self) -> bool:
        # rfc9051:6.4.5 BODY[...] (not PEEK), BINARY[...], RFC822 and RFC822.TEXT set \Seen.
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.has_section and not self.peek


def _field_out(name: bytes) -> bytes:
    if name and all(c in ASTRING_CHARS for c in name):
        return name
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _section(cur: Cursor, binary: bool) -> tuple[tuple[int, ...], str | None, tuple[bytes, ...]]:
    cur.expect(b"[")
    parts: list[int] = []
    text: str | None = None
    fields: list[bytes] = []
    if cur.accept(b"]"):
        return (), None, ()
    if cur.peek().isdigit():
        parts.append(nz_number(cur))
        while cur.peek() == b"." and cur.buf[cur.pos + 1 : cur.pos + 2].isdigit():
            cur.pos += 1
            parts.append(nz_number(cur))
            if len(parts) > MAX_PART_DEPTH:
                raise LimitExceeded("section too deep")
        if binary:
            cur.expect(b"]")
            return tuple(parts), None, ()
        if not cur.accept(b"."):
            cur.expect(b"]")
            return tuple(parts), None, ()
    elif binary:
        raise ParseError("bad BINARY section")
    if cur.accept(b"HEADER.FIELDS.NOT"):
        text = "HEADER.FIELDS.NOT"
    elif cur.accept(b"HEADER.FIELDS"):
        text = "HEADER.FIELDS"
    elif cur.accept(b"HEADER"):
        text = "HEADER"
    elif cur.accept(b"TEXT"):
        text = "TEXT"
    elif parts and cur.accept(b"MIME"):
        text = "MIME"
    else:
        raise ParseError("bad section")
    if text.startswith("HEADER.FIELDS"):
        cur.sp()
        cur.expect(b"(")
        while True:
            name = astring(cur)
            if not name or any(c <= 0x20 or c >= 0x7F or c == 0x3A for c in name):
                raise ParseError("bad header field name")
            fields.append(name)
            if len(fields) > MAX_FIELDS:
                raise LimitExceeded("too many header fields")
            if cur.accept(b")"):
                break
            cur.sp()
    cur.expect(b"]")
    return tuple(parts), text, tuple(fields)


def _partial(cur: Cursor) -> tuple[int, int] | None:
    if not cur.accept(b"<"):
        return None
    start = number(cur)
    cur.expect(b".")
    length = nz_number(cur)
    cur.expect(b">")
    return start, length


def fetch_att(cur: Cursor) -> FetchAtt:
    for prefix, name, peek, binary in (
        (b"BODY.PEEK[", "BODY", True, False),
        (b"BODY[", "BODY", False, False),
        (b"BINARY.PEEK[", "BINARY", True, True),
        (b"BINARY.SIZE[", "BINARY.SIZE", True, True),
        (b"BINARY[", "BINARY", False, True),
    ):
        if cur.startswith_ci(prefix):
            cur.pos += len(prefix) - 1
            section, text, fields = _section(cur, binary)
            partial = None if name == "BINARY.SIZE" else _partial(cur)
            return FetchAtt(name, section, text, fields, partial, peek, True)
    word = _word(cur)
    if word == b"BODY":
        return FetchAtt("BODY")
    if word in SIMPLE:
        return FetchAtt(word.decode())
    raise ParseError("unknown fetch attribute")


def _word(cur: Cursor) -> bytes:
    buf = cur.buf
    start = i = cur.pos
    while i < len(buf) and (buf[i : i + 1].isalnum() or buf[i] == 0x2E):
        i += 1
    if i == start:
        raise ParseError("expected a fetch attribute")
    cur.pos = i
    return buf[start:i].upper()


def fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    """``ALL``/``FAST``/``FULL``, one attribute, or a parenthesised list."""
    if cur.accept(b"("):
        out = [fetch_att(cur)]
        while not cur.accept(b")"):
            cur.sp()
            out.append(fetch_att(cur))
            if len(out) > 100:
                raise LimitExceeded("too many fetch attributes")
        return tuple(out)
    save = cur.pos
    word = _word(cur)
    if word in MACROS:
        return tuple(FetchAtt(n.decode()) for n in MACROS[word])
    cur.pos = save
    return (fetch_att(cur),)
