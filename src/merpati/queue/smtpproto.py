"""Sans-I/O pieces of the SMTP client protocol: reply parsing, EHLO extension parsing, and
building commands and the DATA payload. No sockets, no clock, no asyncio.

``ReplyParser.feed(bytes)`` returns complete ``Reply`` objects (multi-line replies joined,
rfc5321:4.2.1) and raises ``SMTPProtocolError`` on a malformed or oversized reply.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from merpati.smtp.replies import ReplyKind

__all__ = [
    "Extensions",
    "Reply",
    "ReplyParser",
    "SMTPProtocolError",
    "auth_plain",
    "data_payload",
    "mail_command",
    "needs_smtputf8",
    "rcpt_command",
    "xtext",
]

# rfc5321:4.5.3.1.5 a reply line is at most 512 octets; real servers exceed it a little,
# so we accept 4 KiB per line and 200 lines per reply before calling the peer broken.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 200

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


class SMTPProtocolError(Exception):
    """The peer sent something that is not an SMTP reply."""


@dataclass(frozen=True, slots=True)
class Reply(ReplyKind):
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def status(self) -> str:
        """The enhanced status code (rfc3463) of the first line, or one made from the code."""
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        if m and m.group(1) == str(self.code)[0]:
            return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        return f"{str(self.code)[0]}.0.0"

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class ReplyParser:
    """Accumulates bytes and yields replies."""

    def __init__(self) -> None:
        self._buf = b""
        self._lines: list[str] = []
        self._code: int | None = None

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_REPLY_LINE:
                    raise SMTPProtocolError("reply line too long")
                return out
            raw, self._buf = self._buf[:end], self._buf[end + 1 :]
            if len(raw) > MAX_REPLY_LINE:
                raise SMTPProtocolError("reply line too long")
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise SMTPProtocolError("malformed reply line")
            code = int(line[:3])
            if not 200 <= code <= 599:
                raise SMTPProtocolError("reply code out of range")
            if self._code is not None and code != self._code:
                raise SMTPProtocolError("reply code changed within a multi-line reply")
            self._code = code
            self._lines.append(line[4:])
            if len(self._lines) > MAX_REPLY_LINES:
                raise SMTPProtocolError("too many reply lines")
            if len(line) == 3 or line[3] == " ":
                out.append(Reply(code, tuple(self._lines)))
                self._lines = []
                self._code = None

    @property
    def pending(self) -> bool:
        return bool(self._buf or self._lines)


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the peer advertised in its EHLO reply (rfc5321:4.1.1.1)."""

    keywords: frozenset[str] = frozenset()
    size: int | None = None  # rfc1870: 0 means "no fixed limit"
    auth: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, reply: Reply) -> Extensions:
        keywords: set[str] = set()
        size: int | None = None
        auth: set[str] = set()
        for line in reply.lines[1:]:
            parts = line.split()
            if not parts:
                continue
            kw = parts[0].upper()
            keywords.add(kw)
            if kw == "SIZE":
                size = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            elif kw == "AUTH":
                auth.update(p.upper() for p in parts[1:])
        return cls(frozenset(keywords), size, frozenset(auth))

    def has(self, keyword: str) -> bool:
        return keyword in self.keywords


def xtext(value: str) -> str:
    """rfc3461:4 xtext encoding (for ENVID and ORCPT values we generate)."""
    out = []
    for ch in value.encode("utf-8"):
        if 33 <= ch <= 126 and ch not in (ord("+"), ord("=")):
            out.append(chr(ch))
        else:
            out.append(f"+{ch:02X}")
    return "".join(out)


def mail_command(
    sender: str,
    ext: Extensions,
    *,
    size: int,
    eight_bit: bool,
    smtputf8: bool,
    ret: str | None,
    envid: str | None,
    binary: bool = False,
) -> bytes:
    params = []
    if ext.size is not None:
        params.append(f"SIZE={size}")  # rfc1870:6
    if binary and ext.has("BINARYMIME"):
        params.append("BODY=BINARYMIME")  # rfc3030:3
    elif eight_bit and ext.has("8BITMIME"):
        params.append("BODY=8BITMIME")  # rfc6152:2
    if smtputf8 and ext.has("SMTPUTF8"):
        params.append("SMTPUTF8")  # rfc6531:3.4
    if ext.has("DSN"):
        if ret:
            params.append(f"RET={ret}")  # rfc3461:4.3
        if envid:
            params.append(f"ENVID={xtext(envid)}")  # rfc3461:4.4
    tail = "".join(" " + p for p in params)
    return f"MAIL FROM:<{sender}>{tail}\r\n".encode()


def rcpt_command(
    address: str, ext: Extensions, *, notify: frozenset[str], orcpt: str | None
) -> bytes:
    params = []
    if ext.has("DSN"):
        if notify:
            order = ("NEVER", "SUCCESS", "FAILURE", "DELAY")
            params.append("NOTIFY=" + ",".join(n for n in order if n in notify))
        if orcpt:
            params.append(f"ORCPT={orcpt}")  # already "addr-type;xtext" as received
    tail = "".join(" " + p for p in params)
    return f"RCPT TO:<{address}>{tail}\r\n".encode()


_BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def data_payload(message: bytes) -> bytes:
    """The message with CRLF line endings, dot-stuffed (rfc5321:4.5.2), and the final
    ``CRLF.CRLF`` terminator."""
    body = _BARE_EOL.sub(b"\r\n", message)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def needs_smtputf8(mail_from: str, recipients: list[str], message: bytes) -> bool:
    """rfc6531:3.4 a message needs an SMTPUTF8 peer when an envelope address or its header
    (rfc6532) is not ASCII; an 8-bit body alone only needs 8BITMIME."""
    if not mail_from.isascii() or not all(r.isascii() for r in recipients):
        return True
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    head = message if end < 0 else message[:end]
    return not head.isascii()


def auth_plain(username: str, password: str) -> bytes:
    """The rfc4616 PLAIN initial response, base64."""
    raw = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")
    return base64.b64encode(raw)
