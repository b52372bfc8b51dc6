"""Header-block reading for the MIME scanner: field splitting, unfolding, RFC 2047 decoding,
and Content-Type style ``value; name=param`` parsing.

Works on bytes and never raises on malformed input: lines without a colon are skipped, unknown
charsets fall back to Latin-1, broken base64 is decoded as far as it goes. It does not build
the MIME tree (``merpati.mime.scan``) nor parse address lists (``merpati.mime.addresses``).
"""

from __future__ import annotations

import base64
import binascii
import re

# Bounds that keep a hostile header block from costing more than it should.
MAX_FIELDS = 1000  # fields kept per header block
MAX_SEARCH_VALUE = 16 * 1024  # characters of a decoded value kept for SEARCH


def find_header_end(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Return (header_end, body_start) of the header block at ``start``.

    The header ends before the first empty line; the body starts after it. With no empty line
    the whole range is header and the body is empty (rfc5322:2.1 lets the body be absent).
    """
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start, start + 2
    if data.startswith(b"\n", start) and start + 1 <= end:
        return start, start + 1
    crlf = data.find(b"\r\n\r\n", start, end)
    # A bare-LF blank line counts only before the CRLF one: no need to look past it (a CRLF
    # message has none, and looking would read its whole body).
    lf = data.find(b"\n\n", start, end if crlf < 0 else crlf + 2)
    if crlf >= 0 and (lf < 0 or crlf + 1 <= lf):
        return crlf + 2, crlf + 4
    if lf >= 0:
        return lf + 1, lf + 2
    return end, end


def split_fields(data: bytes, start: int, end: int) -> list[tuple[str, bytes]]:
    """Fields of the header block ``data[start:end]`` as (lowercased name, unfolded value).

    rfc5322:2.2.3 unfolding removes the CRLF before folding whitespace; the value keeps its
    internal whitespace and loses only leading and trailing blanks.
    """
    fields: list[tuple[str, bytes]] = []
    name: bytes | None = None
    value: list[bytes] = []
    for line in data[start:end].split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            continue
        if name is not None:
            fields.append(_field(name, value))
            name = None
            if len(fields) >= MAX_FIELDS:
                break
        colon = line.find(b":")
        if colon <= 0:
            continue  # garbage line (or an mbox "From " line): skipped
        name = line[:colon].rstrip(b" \t")
        if not name or b" " in name:
            name = None
            continue
        value = [line[colon + 1 :]]
    if name is not None and len(fields) < MAX_FIELDS:
        fields.append(_field(name, value))
    return fields


def _field(name: bytes, value: list[bytes]) -> tuple[str, bytes]:
    return name.decode("ascii", "replace").lower(), b"".join(value).strip(b" \t\r\n")


def text(raw: bytes) -> str:
    """Bytes of a header as text: UTF-8 when valid (rfc6532), else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_BLANKS = re.compile(rb"[ \t\r\n]+")


def decode_words(raw: bytes) -> str:
    """rfc2047:6 decoding of encoded-words; whitespace between adjacent words is dropped."""
    out: list[str] = []
    pos = 0
    last_was_word = False
    for m in _ENCODED_WORD.finditer(raw):
        between = raw[pos : m.start()]
        if not (last_was_word and _BLANKS.fullmatch(between)):
            out.append(text(between))
        out.append(_decode_word(m.group(1), m.group(2), m.group(3)))
        pos = m.end()
        last_was_word = True
    out.append(text(raw[pos:]))
    return "".join(out)


def _decode_word(charset: bytes, kind: bytes, payload: bytes) -> str:
    name = charset.split(b"*", 1)[0].decode("ascii", "replace")  # rfc2231:5 language suffix
    if kind in b"Bb":
        payload = payload + b"=" * (-len(payload) % 4)
        try:
            octets = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            octets = payload
    else:
        octets = _q_decode(payload)
    try:
        return octets.decode(name, "replace")
    except LookupError:
        return octets.decode("latin-1")


def _q_decode(payload: bytes) -> bytes:
    payload = payload.replace(b"_", b" ")
    out = bytearray()
    i = 0
    while i < len(payload):
        c = payload[i]
        if c == 0x3D and _is_hex(payload[i + 1 : i + 3]):
            out.append(int(payload[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def decode_search_value(raw: bytes) -> str:
    return decode_words(raw)[:MAX_SEARCH_VALUE]


def parse_parameterised(raw: bytes) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``value *(";" name "=" value)`` (Content-Type, Content-Disposition) -> (value, params).

    Quoted values are unquoted (rfc2045:5.1); parameters without ``=`` are skipped; names keep
    their case as sent. Comments are not stripped (they are rare and harmless here).
    """
    items = _split_semicolons(raw)
    head = text(items[0]).strip() if items else ""
    params: list[tuple[str, str]] = []
    for item in items[1:]:
        eq = item.find(b"=")
        if eq <= 0:
            continue
        name = text(item[:eq]).strip()
        value = item[eq + 1 :].strip()
        if value.startswith(b'"'):
            value = _unquote(value)
        if name:
            params.append((name, text(value)))
    return head, tuple(params)


def _split_semicolons(raw: bytes) -> list[bytes]:
    items: list[bytes] = []
    current = bytearray()
    quoted = False
    escaped = False
    for c in raw:
        if escaped:
            current.append(c)
            escaped = False
        elif quoted and c == 0x5C:
            current.append(c)
            escaped = True
        elif c == 0x22:
            quoted = not quoted
            current.append(c)
        elif c == 0x3B and not quoted:
            items.append(bytes(current))
            current = bytearray()
        else:
            current.append(c)
    items.append(bytes(current))
    return items


def _unquote(value: bytes) -> bytes:
    out = bytearray()
    i = 1
    while i < len(value):
        c = value[i]
        if c == 0x5C and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if c == 0x22:
            break
        out.append(c)
        i += 1
    return bytes(out)
