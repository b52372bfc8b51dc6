"""The end-of-attempt decisions, as plain data: bounces, notices, warnings, the schedule."""

from __future__ import annotations

from merpati.config import DeliveryConfig
from merpati.delivery.api import Envelope
from merpati.queue.notices import dsn_envelope, plan_end_of_attempt, retry_delay
from merpati.queue.store import QueuedMessage, QueuedRecipient

CFG = DeliveryConfig(retry=(60.0, 600.0), delay_warning=3600.0, max_queue_time=7200.0)


def message(
    *rcpts: QueuedRecipient, sender: str = "a@a.test", warned: bool = False
) -> QueuedMessage:
    return QueuedMessage(
        "q1",
        Envelope(sender, ()),
        10,
        created=0.0,
        next_attempt=0.0,
        attempts=0,
        warned=warned,
        bounce_requested=False,
        recipients=list(rcpts),
    )


def rcpt(
    idx: int, state: str = "pending", notify: frozenset[str] = frozenset(), **kw: object
) -> QueuedRecipient:
    return QueuedRecipient(idx, f"r{idx}@b.test", notify, None, state=state, **kw)  # type: ignore[arg-type]


def test_retry_schedule_last_step_repeats() -> None:
    assert [retry_delay((5.0, 10.0), n) for n in (0, 1, 2, 3, 9)] == [5.0, 5.0, 10.0, 10.0, 10.0]


def test_deferred_recipient_is_retried_on_schedule() -> None:
    m = message(rcpt(0, last_code=451, last_reply="451 later"))
    plan = plan_end_of_attempt(m, now=100.0, cfg=CFG)
    assert not plan.done and plan.report == [] and plan.next_attempt == 160.0
    m.attempts = 1
    assert plan_end_of_attempt(m, now=100.0, cfg=CFG).next_attempt == 700.0
    m.attempts = 7
    assert plan_end_of_attempt(m, now=3500.0, cfg=CFG).next_attempt == 3600.0  # the warning


def test_failure_success_and_never() -> None:
    m = message(
        rcpt(0, "bounced", last_status="5.1.1", last_reply="550 5.1.1 no", remote_mta="mx"),
        rcpt(1, "delivered", frozenset({"SUCCESS"}), relayed=True),
        rcpt(2, "bounced", frozenset({"NEVER"})),
        rcpt(3, "delivered"),
    )
    plan = plan_end_of_attempt(m, now=10.0, cfg=CFG)
    assert plan.done and sorted(plan.reported) == [0, 1, 2, 3]
    assert [(d.address, d.action) for d in plan.report] == [
        ("r0@b.test", "failed"),
        ("r1@b.test", "relayed"),
    ]
    assert plan.report[0].diagnostic == "550 5.1.1 no" and plan.report[0].remote_mta == "mx"
    assert plan.notify_sender(m.envelope)
    assert not plan.notify_sender(Envelope("", ()))
    assert not plan.notify_sender(Envelope("a@a.test", (), is_bounce=True))


def test_delay_warning_once_and_expiry() -> None:
    m = message(rcpt(0, last_reply="451 later"), rcpt(1, notify=frozenset({"FAILURE"})))
    plan = plan_end_of_attempt(m, now=3700.0, cfg=CFG)
    assert plan.warned and [d.action for d in plan.report] == ["delayed"]
    assert plan.report[0].will_retry_until == 7200.0
    m.warned = True
    assert plan_end_of_attempt(m, now=3800.0, cfg=CFG).report == []
    plan = plan_end_of_attempt(m, now=7300.0, cfg=CFG)
    assert plan.done and {d.status for d in plan.report} == {"4.4.7"}
    assert "delivery time expired" in plan.report[0].text
    assert [u.state for u in plan.forced] == ["bounced", "bounced"]


def test_operator_bounce() -> None:
    m = message(rcpt(0), rcpt(1, "delivered"))
    plan = plan_end_of_attempt(m, now=5.0, cfg=CFG, operator_bounce=True)
    assert plan.done and plan.attempts == 0
    assert [(d.address, d.status) for d in plan.report] == [("r0@b.test", "5.0.0")]


def test_dsn_envelope() -> None:
    env = dsn_envelope("á@a.test", "é".encode())
    assert env.mail_from == "" and env.is_bounce and env.smtputf8
    assert env.recipients[0].notify == {"NEVER"}
