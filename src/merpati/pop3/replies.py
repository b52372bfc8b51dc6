"""POP3 replies on the wire: status lines with RESP-CODES, multi-line bodies, dot-stuffing.

Does: format ``+OK``/``-ERR`` lines (rfc1939:3) with an optional response code in brackets
(rfc2449:8, rfc3206), multi-line responses terminated by ".", and message content for RETR and
TOP: line ends made CRLF, lines starting with "." stuffed, all done on the whole buffer at once
(bytes.replace / one regular expression), never a Python loop per line.
Does not: decide which reply a command gets (``session``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

__all__ = ["RespCode", "err", "message_response", "multiline", "ok", "top_of_message"]


class RespCode(Enum):
    """Response codes: rfc2449:8.1 (LOGIN-DELAY, IN-USE), rfc3206:4 (SYS/TEMP, SYS/PERM, AUTH)."""

    IN_USE = "IN-USE"
    LOGIN_DELAY = "LOGIN-DELAY"
    SYS_TEMP = "SYS/TEMP"
    SYS_PERM = "SYS/PERM"
    AUTH = "AUTH"


def _text(text: str) -> bytes:
    # Reply text is ours (never exception text); keep it on one line.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8")


def ok(text: str = "") -> bytes:
    return b"+OK " + _text(text) + b"\r\n" if text else b"+OK\r\n"


def err(text: str, code: RespCode | None = None) -> bytes:
    if code is None:
        return b"-ERR " + _text(text) + b"\r\n"
    return b"-ERR [" + code.value.encode("ascii") + b"] " + _text(text) + b"\r\n"


def multiline(first: bytes, lines: Iterable[bytes]) -> bytes:
    """``first`` is a complete status line; ``lines`` are short protocol lines (LIST, UIDL,
    CAPA) that never start with "." and have no line ends of their own."""
    body = b"".join(line + b"\r\n" for line in lines)
    return first + body + b".\r\n"


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _crlf(data: bytes) -> bytes:
    """Make every line end CRLF. Stored messages already use CRLF, so this is one scan."""
    if data.count(b"\n") != data.count(b"\r\n"):
        data = _BARE_LF.sub(b"\r\n", data)
    return data


def _stuff(data: bytes) -> bytes:
    """rfc1939:3 byte-stuff lines that begin with "." and terminate the response."""
    data = _crlf(data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def message_response(data: bytes) -> bytes:
    """The whole RETR reply for a message: status line, stuffed content, terminator."""
    return b"+OK " + str(len(data)).encode("ascii") + b" octets\r\n" + _stuff(data)


def top_of_message(data: bytes, lines: int) -> bytes:
    """The whole TOP reply: the header, the blank line, and the first ``lines`` body lines
    (rfc1939:7)."""
    data = _crlf(data)
    if data.startswith(b"\r\n"):
        head_end = 2  # no header fields at all
    else:
        idx = data.find(b"\r\n\r\n")
        head_end = len(data) if idx < 0 else idx + 4
    head, body = data[:head_end], data[head_end:]
    if lines == 0:
        body = b""
    elif body.count(b"\r\n") >= lines:
        parts = body.split(b"\r\n", lines)
        body = b"\r\n".join(parts[:lines]) + b"\r\n"
    return b"+OK top of message follows\r\n" + _stuff(head + body)
