"""Trace and submission headers: Received (rfc5321:4.4), Date and Message-ID (rfc6409:8), and
the Received count used for loop detection (rfc5321:6.3).

Pure functions: the caller passes the time and any random token in, so tests can pin them.
Does not add Return-Path or Delivered-To (final delivery does, in ``merpati.delivery``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_DATE = re.compile(rb"^date[ \t]*:", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:", re.IGNORECASE | re.MULTILINE)


def header_block(message: bytes) -> bytes:
    """The header section of ``message`` (up to the first empty line), CRLF line ends."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def count_received(message: bytes) -> int:
    return len(_RECEIVED.findall(header_block(message)))


@dataclass(frozen=True, slots=True)
class TraceInfo:
    helo: str | None
    client_ip: str
    hostname: str
    esmtp: bool
    tls_version: str | None
    tls_cipher: str | None
    authenticated: bool
    smtputf8: bool
    auth_user: str | None  # shown only when the operator asked for it
    message_id: str  # our id for this transaction (logged too)
    recipient: str | None  # shown in "for" only for a single recipient (rfc5321:7.2)


def protocol(info: TraceInfo) -> str:
    """The "with" keyword: rfc3848 ESMTP/ESMTPS/ESMTPA/ESMTPSA, rfc6531:3.7.3 UTF8SMTP*."""
    if not info.esmtp:
        return "SMTP"
    base = "UTF8SMTP" if info.smtputf8 else "ESMTP"
    suffix = ("S" if info.tls_version else "") + ("A" if info.authenticated else "")
    return base + suffix


_last_date: tuple[datetime | None, str] = (None, "")


def _date(when: datetime) -> str:
    """rfc5322:3.3 date-time of ``when``; the last one is reused within its second (one
    per message cost more than the rest of the header)."""
    global _last_date
    key = when.replace(microsecond=0)
    if _last_date[0] != key:
        _last_date = (key, format_datetime(key))
    return _last_date[1]


def received_header(info: TraceInfo, when: datetime) -> bytes:
    """One Received: field, folded, ending with CRLF."""
    helo = _clean(info.helo or "unknown")
    ip = info.client_ip
    literal = f"IPv6:{ip}" if ":" in ip else ip
    parts = [f"Received: from {helo} ([{literal}])", f"\tby {info.hostname} (Merpati)"]
    parts.append(f"\twith {protocol(info)} id {info.message_id}")
    if info.tls_version:
        cipher = _clean(info.tls_cipher or "unknown")
        parts.append(f"\t(using {info.tls_version} with cipher {cipher})")
    if info.authenticated and info.auth_user:
        parts.append(f"\t(authenticated user {_clean(info.auth_user)})")
    if info.recipient:
        parts.append(f"\tfor <{info.recipient}>")
    parts[-1] += f"; {_date(when)}"
    return ("\r\n".join(parts) + "\r\n").encode("utf-8")


def _clean(text: str) -> str:
    """Something the client sent, made safe for a comment-free header token."""
    return re.sub(r"[^\x21-\x7e\u0080-\U0010ffff]|[()\\;]", "_", text)[:255]


def submission_headers(message: bytes, when: datetime, message_id: str) -> bytes:
    """rfc6409:8.2 / 8.3: the Date and Message-ID fields a submitted message lacks."""
    head = header_block(message)
    extra = b""
    if not _DATE.search(head):
        extra += f"Date: {_date(when)}\r\n".encode()
    if not _MESSAGE_ID.search(head):
        extra += f"Message-ID: <{message_id}>\r\n".encode()
    return extra
