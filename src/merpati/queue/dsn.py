"""Delivery status notifications (rfc3464) built from queue outcomes. Pure: bytes out, the
clock and the random token are arguments.

One DSN covers one original message and any number of its recipients, each with its Action
(failed, delayed, delivered, relayed), Status (rfc3463), Remote-MTA and Diagnostic-Code. The
third part is the original message (RET=FULL), or its header (RET=HDRS, or a large message when
the sender did not say), rfc3461:4.3. When an address is not ASCII the report uses the rfc6533
types (message/global-delivery-status, utf-8 address type, message/global).

Whether a DSN is due at all (NOTIFY, null sender, bounces of bounces) is the runner's call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Literal

__all__ = ["DEFAULT_RETURN_LIMIT", "DSNRecipient", "build_dsn", "xtext_decode"]

# Without RET, messages up to this size come back whole; larger ones only by their header.
DEFAULT_RETURN_LIMIT = 256 * 1024

Action = Literal["failed", "delayed", "delivered", "relayed"]

_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]{1,900}>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class DSNRecipient:
    address: str
    action: Action
    status: str
    text: str  # a human explanation for the first part
    orcpt: str | None = None  # rfc3461:4.2 "addr-type;xtext" as received
    remote_mta: str | None = None
    diagnostic: str | None = None  # the peer's reply, "550 5.1.1 no such user"
    last_attempt: float | None = None
    will_retry_until: float | None = None


def xtext_decode(value: str) -> str:
    raw = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def _date(t: float) -> str:
    return formatdate(t, usegmt=True)


def _header_block(message: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            return message[: end + len(sep) // 2]
    return message


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def _clean(text: str) -> str:
    """One line, no control characters (a header or report field value)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original: bytes,
    recipients: list[DSNRecipient],
    arrival: float,
    now: float,
    token: str,
    ret: str | None = None,
    envid: str | None = None,
) -> bytes:
    utf8 = not sender.isascii() or any(not r.address.isascii() for r in recipients)
    addr_type = "utf-8" if utf8 else "rfc822"
    actions = {r.action for r in recipients}
    if "failed" in actions:
        subject = "Undelivered Mail Returned to Sender"
        intro = "Your message could not be delivered to one or more recipients."
    elif "delayed" in actions:
        subject = "Delayed Mail (still being retried)"
        intro = (
            "Your message has not been delivered yet to the recipients below. "
            "It stays in the queue and will be retried; no action is needed."
        )
    else:
        subject = "Successful Mail Delivery Report"
        intro = "Your message was delivered (or relayed) to the recipients below."
    boundary = f"=_merpati_dsn_{token}"

    human = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        intro,
        "",
    ]
    for r in recipients:
        line = f"<{r.address}>: {r.action}: {_clean(r.text)}"
        if r.remote_mta:
            line += f" (remote host {r.remote_mta})"
        human.append(line)
    human_text = "\r\n".join(human) + "\r\n"

    fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        fields.append(f"Original-Envelope-Id: {_clean(xtext_decode(envid))}")  # rfc3464:2.2.1
    fields.append(f"Arrival-Date: {_date(arrival)}")
    blocks = ["\r\n".join(fields)]
    for r in recipients:
        f = []
        if r.orcpt:
            kind, _, value = r.orcpt.partition(";")
            f.append(f"Original-Recipient: {kind.strip()};{_clean(xtext_decode(value))}")
        f.append(f"Final-Recipient: {addr_type}; {r.address}")
        f.append(f"Action: {r.action}")  # rfc3464:2.3.3
        f.append(f"Status: {r.status}")  # rfc3464:2.3.4
        if r.remote_mta:
            f.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            f.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")  # rfc3464:2.3.6
        if r.last_attempt is not None:
            f.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until is not None:
            f.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        blocks.append("\r\n".join(f))
    report = ("\r\n\r\n".join(blocks) + "\r\n").encode("utf-8")

    full = ret == "FULL" or (ret is None and len(original) <= DEFAULT_RETURN_LIMIT)
    if full:
        returned = _crlf(original)
        returned_type = "message/global" if utf8 else "message/rfc822"
    else:
        returned = _crlf(_header_block(original))
        returned_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"

    m = _MESSAGE_ID.search(_header_block(original))
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <dsn.{token}@{reporting_mta}>",
    ]
    if m:
        ref = m.group(1).decode("utf-8", "replace")
        headers += [f"In-Reply-To: {ref}", f"References: {ref}"]
    headers += [
        "Auto-Submitted: auto-replied",  # rfc3834:5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit" if utf8 or not returned.isascii() else "",
    ]
    head = "\r\n".join(h for h in headers if h) + "\r\n\r\n"
    b = boundary.encode()
    parts = [
        head.encode("utf-8"),
        b"This is a MIME-encapsulated message.\r\n\r\n",
        b"--" + b + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Description: Notification\r\n\r\n" + human_text.encode("utf-8") + b"\r\n",
        b"--"
        + b
        + f"\r\nContent-Type: {status_type}\r\n".encode()
        + b"Content-Description: Delivery report\r\n\r\n"
        + report
        + b"\r\n",
        b"--"
        + b
        + f"\r\nContent-Type: {returned_type}\r\n".encode()
        + b"Content-Description: Original message\r\n\r\n"
        + returned
        + b"\r\n",
        b"--" + b + b"--\r\n",
    ]
    return b"".join(parts)
