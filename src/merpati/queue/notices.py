"""What the end of an attempt means for a message: pure decisions, no I/O.

``plan_end_of_attempt`` takes a claimed message whose recipients carry this attempt's outcomes
and decides which waiting recipients now bounce (operator's bounce, ``max_queue_time``), which
recipients the sender must hear about (NOTIFY, rfc3461:4.1; a delay warning once after
``delay_warning``), and when the message is due again (the ``retry`` schedule, its last step
repeating, never later than the warning or the expiry). The runner carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from merpati.config import DeliveryConfig
from merpati.delivery.api import BodyType, Envelope, Recipient
from merpati.queue.dsn import Action, DSNRecipient
from merpati.queue.store import QueuedMessage, QueuedRecipient, RecipientUpdate

__all__ = ["DEFAULT_NOTIFY", "Plan", "dsn_envelope", "plan_end_of_attempt", "retry_delay"]

# rfc3461:4.1 when NOTIFY is absent we report failures and delays.
DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})
OPERATOR_BOUNCE_TEXT = "removed from the queue by the postmaster"


@dataclass
class Plan:
    forced: list[RecipientUpdate] = field(default_factory=list)  # bounced now, not tried
    report: list[DSNRecipient] = field(default_factory=list)  # what the DSN tells
    reported: list[int] = field(default_factory=list)  # final states now accounted for
    warned: bool = False
    done: bool = False  # nothing left to try: the message leaves the queue
    attempts: int = 0
    next_attempt: float = 0.0

    def notify_sender(self, env: Envelope) -> bool:
        """rfc3461:6.2 never a DSN for a null sender nor for a DSN of ours."""
        return bool(self.report) and bool(env.mail_from) and not env.is_bounce


def retry_delay(schedule: tuple[float, ...], attempts: int) -> float:
    return schedule[min(max(attempts, 1) - 1, len(schedule) - 1)]


def dsn_recipient(
    r: QueuedRecipient, action: Action, now: float, until: float | None = None
) -> DSNRecipient:
    remote = r.remote_mta if r.remote_mta and r.remote_mta != "local" else None
    diagnostic = r.last_reply if remote and r.last_reply and r.last_reply[:3].isdigit() else None
    status = r.last_status or ("2.0.0" if action in ("delivered", "relayed") else "4.0.0")
    text = r.last_reply or action
    if action == "failed" and status == "4.4.7":
        text = f"delivery time expired; last error: {r.last_reply or 'none'}"
    if action == "delayed" and not status.startswith("4"):
        status = "4.0.0"
    return DSNRecipient(
        address=r.address,
        action=action,
        status=status,
        text=text,
        orcpt=r.orcpt,
        remote_mta=remote,
        diagnostic=diagnostic,
        last_attempt=now,
        will_retry_until=until,
    )


def plan_end_of_attempt(
    msg: QueuedMessage, *, now: float, cfg: DeliveryConfig, operator_bounce: bool = False
) -> Plan:
    """Decide; mutates the recipients that bounce now (their state, status, reply)."""
    plan = Plan(warned=msg.warned, attempts=msg.attempts + (0 if operator_bounce else 1))
    age = now - msg.created
    for r in msg.pending:
        if operator_bounce:
            r.state, r.last_status = "bounced", "5.0.0"
            r.last_code, r.last_reply = 550, OPERATOR_BOUNCE_TEXT
        elif age >= cfg.max_queue_time:
            # rfc5321:4.5.4.1 give up after the configured time; rfc3463 X.4.7.
            r.state, r.last_status = "bounced", "4.4.7"
        else:
            continue
        plan.forced.append(
            RecipientUpdate(
                r.idx,
                "bounced",
                r.last_code,
                r.last_status,
                r.last_reply,
                r.remote_mta,
                attempted=False,
            )
        )
    for r in msg.recipients:
        if r.state == "pending" or r.notified:
            continue
        plan.reported.append(r.idx)
        notify = r.notify or DEFAULT_NOTIFY
        if "NEVER" in notify:
            continue
        if r.state == "bounced" and "FAILURE" in notify:
            plan.report.append(dsn_recipient(r, "failed", now))
        elif r.state == "delivered" and "SUCCESS" in notify:
            plan.report.append(dsn_recipient(r, "relayed" if r.relayed else "delivered", now))
    pending = msg.pending
    if pending and not plan.warned and age >= cfg.delay_warning:
        plan.warned = True
        until = msg.created + cfg.max_queue_time
        for r in pending:
            notify = r.notify or DEFAULT_NOTIFY
            if "DELAY" in notify and "NEVER" not in notify:
                plan.report.append(dsn_recipient(r, "delayed", now, until))
    plan.done = not pending
    plan.next_attempt = now + retry_delay(cfg.retry, plan.attempts)
    if pending:
        plan.next_attempt = min(plan.next_attempt, msg.created + cfg.max_queue_time)
        if not plan.warned:
            plan.next_attempt = min(plan.next_attempt, max(now, msg.created + cfg.delay_warning))
    return plan


def dsn_envelope(sender: str, dsn: bytes) -> Envelope:
    """The envelope of a DSN: null sender, marked as a bounce, NOTIFY=NEVER."""
    return Envelope(
        mail_from="",
        recipients=(Recipient(sender, frozenset({"NEVER"})),),
        body=BodyType.EIGHT_BIT if not dsn.isascii() else BodyType.SEVEN_BIT,
        smtputf8=not sender.isascii(),
        is_bounce=True,
    )
