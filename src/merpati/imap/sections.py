"""Slicing the stored message for FETCH BODY[section]<partial> and BINARY[section]
(rfc9051:6.4.5, rfc3516:4.2): every section is a slice of the stored bytes found through the
parsed-once structure, except HEADER.FIELDS(.NOT) (a filter over the header lines) and BINARY
(the part's content-transfer-encoding undone).
"""

from __future__ import annotations

import base64
import binascii
import re

from merpati.imap.bodystructure import find_part, is_message
from merpati.imap.parse.fetchatt import FetchAtt
from merpati.mime.structure import MessageStructure

_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")


class UnknownEncoding(Exception):
    """BINARY of a part whose content-transfer-encoding we cannot undo (rfc3516:4.3)."""


def filter_header(header: bytes, names: tuple[bytes, ...], exclude: bool) -> bytes:
    """The fields of ``header`` named (or, with ``exclude``, not named) in ``names``,
    followed by the blank line (rfc9051:6.4.5 HEADER.FIELDS)."""
    wanted = {n.lower() for n in names}
    out: list[bytes] = []
    keep = False
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip().lower() if colon > 0 else b""
        keep = bool(name) and ((name in wanted) != exclude)
        if keep:
            out.append(line)
    return b"".join(x + b"\r\n" for x in out) + b"\r\n"


def section(data: bytes, st: MessageStructure, att: FetchAtt) -> bytes | None:
    """The bytes of a BODY[...] section before any partial; None if the part does not exist."""
    if att.section:
        part = find_part(st, att.section)
        if part is None:
            return None
        if att.text is None:
            return data[part.body_start : part.end]
        if att.text == "MIME":
            return data[part.header_start : part.body_start]
        if not (is_message(part) and part.message is not None):
            return b""
        inner = part.message.body
    else:
        if att.text is None:
            return data
        inner = st.body
    header = data[inner.header_start : inner.body_start]
    if att.text == "HEADER":
        return header
    if att.text == "TEXT":
        return data[inner.body_start : inner.end]
    return filter_header(header, att.fields, att.text == "HEADER.FIELDS.NOT")


def binary(data: bytes, st: MessageStructure, path: tuple[int, ...]) -> bytes | None:
    """The decoded content of a part (rfc3516:4.2); None if the part does not exist."""
    if not path:
        return data
    part = find_part(st, path)
    if part is None:
        return None
    raw = data[part.body_start : part.end]
    encoding = part.encoding.lower()
    if encoding in ("7bit", "8bit", "binary", ""):
        return raw
    if encoding == "base64":
        cleaned = _NOT_B64.sub(b"", raw)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
        try:
            return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            raise UnknownEncoding("undecodable base64") from None
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    raise UnknownEncoding(encoding)


def partial(value: bytes, att: FetchAtt) -> bytes:
    if att.partial is None:
        return value
    start, length = att.partial
    return value[start : start + length]
