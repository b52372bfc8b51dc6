"""What the SMTP session asks of its transport: frozen events returned by ``next_event()``.

Events that need a decision (``MailRequest``, ``RcptRequest``, ``AuthRequest``,
``MessageRequest``, ``StartTLSRequest``) must be answered with the matching ``Session`` method
before ``next_event()`` is called again. ``NEED_DATA`` means: send ``data_to_send()``, then feed
more bytes. ``CLOSE`` means: send ``data_to_send()`` and close the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from merpati.delivery.api import Envelope
from merpati.smtp.commands import Mail, Rcpt


class Signal(Enum):
    NEED_DATA = "need-data"
    CLOSE = "close"


NEED_DATA = Signal.NEED_DATA
CLOSE = Signal.CLOSE


@dataclass(frozen=True, slots=True)
class MailRequest:
    """Decide on MAIL FROM: answer with ``Session.respond(reply)``."""

    command: Mail


@dataclass(frozen=True, slots=True)
class RcptRequest:
    """Decide on RCPT TO: answer with ``Session.respond(reply, address=canonical)``."""

    command: Rcpt


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Check credentials: answer with ``Session.auth_result(account_or_None)``."""

    mechanism: str
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never show the password in a log or a traceback
        return f"AuthRequest(mechanism={self.mechanism!r}, username={self.username!r})"


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """A complete message: deliver it durably, then answer with ``Session.respond(reply)``."""

    envelope: Envelope
    data: bytes
    via_bdat: bool


@dataclass(frozen=True, slots=True)
class StartTLSRequest:
    """Send ``data_to_send()`` (the 220), upgrade, then call ``Session.tls_started(...)``."""


Event = Signal | MailRequest | RcptRequest | AuthRequest | MessageRequest | StartTLSRequest
