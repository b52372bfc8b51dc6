"""Types shared by everything that hands a message over: SMTP, APPEND, bounces, forwarding.

``Envelope`` is the SMTP envelope (rfc5321:2.3.1) with the DSN parameters of rfc3461 kept for
the queue. ``OutboundQueue`` is what the delivery path hands remote recipients to; the queue
package implements it. ``Deliverer`` is the signature of the one ``deliver`` function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol


class BodyType(Enum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT = "8BITMIME"
    BINARY = "BINARYMIME"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # as given in RCPT TO (unicode; domain in canonical form)
    notify: frozenset[Literal["SUCCESS", "FAILURE", "DELAY", "NEVER"]] = frozenset()
    orcpt: str | None = None  # rfc3461:4.2 "addr-type;xtext" as received


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str  # "" is the null reverse-path (bounces)
    recipients: tuple[Recipient, ...]
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None  # rfc3461:4.3
    envid: str | None = None  # rfc3461:4.4
    auth_user: str | None = None  # the authenticated account, if any
    client_ip: str | None = None
    helo: str | None = None
    # Set on messages we generate (DSNs) so they are never bounced again.
    is_bounce: bool = False
    extra: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    recipient: Recipient
    ok: bool
    code: int  # SMTP reply code, e.g. 250, 452, 550
    status: str  # enhanced status, e.g. "2.0.0", "4.2.2"
    text: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    outcomes: tuple[RecipientOutcome, ...]
    queue_id: str | None = None  # set when any recipient went to the queue

    @property
    def all_ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


class OutboundQueue(Protocol):
    async def enqueue(
        self, envelope: Envelope, message: bytes, recipients: tuple[Recipient, ...]
    ) -> str:
        """Durably store ``message`` for ``recipients`` (remote addresses); return the queue
        id. Returns only when the message and its recipient records are fsynced."""
        ...

    def wake(self) -> None:
        """Start a queue run soon (something was queued or an operator asked)."""
        ...


class Intake(Protocol):
    async def accept(self, envelope: Envelope, message: bytes) -> str:
        """Durably journal the message for delivery; return its intake id. Returns only
        when the message is fsynced; raises if it could not be."""
        ...


class Deliverer(Protocol):
    async def __call__(self, envelope: Envelope, message: bytes) -> DeliveryReport: ...

    async def many(self, items: Sequence[tuple[Envelope, bytes]]) -> list[DeliveryReport]:
        """What ``__call__`` does for each item, with one mail store commit for them all."""
        ...
