"""Modified UTF-7 mailbox names (rfc3501:5.1.3) for IMAP4rev1 clients without UTF8=ACCEPT.

``decode`` refuses what the RFC forbids (bad base64, unnecessary encodings, printable ASCII
inside a shift, unterminated shifts), so one name has exactly one spelling on the wire.
"""

from __future__ import annotations

import base64
import binascii


class MUTF7Error(ValueError):
    pass


def encode(name: str) -> bytes:
    out = bytearray()
    run: list[str] = []

    def flush() -> None:
        if run:
            raw = "".join(run).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            run.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            run.append(ch)
    flush()
    return bytes(out)


def decode(data: bytes) -> str:
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c < 0x20 or c > 0x7E:
            raise MUTF7Error("8-bit or control character in a modified UTF-7 name")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated shift")
        chunk = data[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        b64 = chunk.replace(b",", b"/")
        try:
            raw = base64.b64decode(b64 + b"=" * (-len(b64) % 4), validate=True)
            text = raw.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise MUTF7Error("bad base64 in a shift") from None
        if any(0x20 <= ord(ch) <= 0x7E for ch in text):
            raise MUTF7Error("printable ASCII inside a shift")
        out.append(text)
    result = "".join(out)
    if encode(result) != data:
        raise MUTF7Error("not the canonical spelling")
    return result
