"""The runner end to end against in-process fake SMTP servers on 127.0.0.1 and the fake
resolver: routing, one transaction per domain, retries, bounces, DSNs, limits, hooks."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import time
from collections.abc import Callable
from typing import Any

from fakesmtp import FakeSMTP, Transaction
from qhelpers import Harness, HarnessFactory, run, wait_until

from merpati.delivery.api import BodyType, Envelope, Recipient
from merpati.queue import signing
from merpati.queue.store import QueueStore

MSG = (
    b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hi\r\n"
    b"Message-ID: <m1@a.test>\r\n\r\nhello\r\n"
)


def env(*rcpts: str, sender: str = "alice@a.test", **kw: Any) -> Envelope:
    return Envelope(sender, tuple(Recipient(r) for r in rcpts), **kw)


def rcpts(*addrs: str, notify: frozenset[str] = frozenset()) -> tuple[Recipient, ...]:
    return tuple(Recipient(a, notify) for a in addrs)  # type: ignore[arg-type]


def dsn_parts(raw: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return msg, list(msg.get_payload())  # type: ignore[arg-type]


def status_groups(raw: bytes) -> list[dict[str, str]]:
    _, parts = dsn_parts(raw)
    report = parts[1]
    assert report.get_content_type() == "message/delivery-status"
    groups = []
    for block in report.get_payload():  # type: ignore[union-attr]
        groups.append({k.lower(): v for k, v in block.items()})
    return groups[1:]  # per-recipient groups (the first is per-message)


async def with_sink(
    harness: HarnessFactory,
    body: Callable[[Harness, FakeSMTP], Any],
    sink: FakeSMTP | None = None,
    start: bool = True,
    **cfg: Any,
) -> None:
    sink = sink or FakeSMTP()
    port = await sink.start()
    h = await harness(port, **cfg)
    if start:
        h.runner.start()
    try:
        await body(h, sink)
    finally:
        await h.runner.stop(2)
        await sink.close()
        h.store.close()


def test_delivers_one_transaction_per_domain_with_all_rcpts(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test", "carol@b.test", "dave@c.test"))
        h.runner.wake()
        await h.idle()
        assert h.store.get(qid) is None  # done and removed
        assert not list(h.store.msg_dir.iterdir())
        by_domain = sorted(sorted(t.rcpts) for t in sink.transactions)
        assert by_domain == [["bob@b.test", "carol@b.test"], ["dave@c.test"]]
        t = sink.transactions[0]
        assert t.mail_from == "alice@a.test" and b"Subject: hi" in t.data and not t.tls
        attempts = h.log.named("queue.attempt")
        assert len(attempts) == 3
        assert {a["result"] for a in attempts} == {"delivered"}
        assert attempts[0]["mx"] in ("mx.b.test", "mx.c.test")
        assert attempts[0]["ip"] == "127.0.0.1" and attempts[0]["tls"] == ""
        assert attempts[0]["code"] == 250 and attempts[0]["id"] == qid
        assert not h.local.delivered  # no DSN without NOTIFY=SUCCESS

    sink = FakeSMTP()
    run(with_sink(harness, body, sink))


def test_starttls_is_used_when_offered(harness: HarnessFactory, server_tls: ssl.SSLContext) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert sink.transactions[0].tls
        assert "STARTTLS" in sink.commands
        assert h.log.named("queue.attempt")[0]["tls"] in ("TLSv1.2", "TLSv1.3")

    run(with_sink(harness, body, FakeSMTP(tls_context=server_tls)))


def test_deferred_then_delivered_on_retry(harness: HarnessFactory) -> None:
    state = {"n": 0}

    def rcpt(addr: str) -> bytes:
        state["n"] += 1
        return b"451 4.3.0 greylisted\r\n" if state["n"] == 1 else b"250 ok\r\n"

    async def body(h: Harness, sink: FakeSMTP) -> None:
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.log.named("queue.attempt")) >= 1)
        await wait_until(lambda: h.store.get(qid) is None or h.store.get(qid).attempts == 1)  # type: ignore[union-attr]
        await wait_until(lambda: len(sink.transactions) == 1, 10)
        await h.idle()
        results = [a["result"] for a in h.log.named("queue.attempt")]
        assert results == ["deferred", "delivered"]
        assert h.log.named("queue.attempt")[0]["code"] == 451
        assert h.store.get(qid) is None

    run(with_sink(harness, body, FakeSMTP(rcpt_reply=rcpt)))


def test_5xx_bounces_with_a_dsn_to_the_sender(harness: HarnessFactory) -> None:
    def rcpt(addr: str) -> bytes:
        return b"550 5.1.1 no such user\r\n" if addr.startswith("nobody") else b"250 ok\r\n"

    async def body(h: Harness, sink: FakeSMTP) -> None:
        orcpt = Recipient("nobody@b.test", frozenset(), "rfc822;nob+2Body@b.test")
        qid = await h.store.enqueue(env(envid="ENV-1"), MSG, (Recipient("bob@b.test"), orcpt))
        h.runner.wake()
        await h.idle()
        assert h.store.get(qid) is None
        assert sink.transactions[0].rcpts == ["bob@b.test"]
        dsns = h.local.dsns()
        assert len(dsns) == 1
        denv = next(e for e, _ in h.local.delivered)
        assert denv.mail_from == "" and denv.is_bounce
        assert [r.address for r in denv.recipients] == ["alice@a.test"]
        top, parts = dsn_parts(dsns[0])
        assert top.get_content_type() == "multipart/report"
        assert top.get_param("report-type") == "delivery-status"
        assert top["To"] == "<alice@a.test>"
        assert top["Auto-Submitted"] == "auto-replied"
        assert top["In-Reply-To"] == "<m1@a.test>"
        groups = status_groups(dsns[0])
        assert len(groups) == 1
        g = groups[0]
        assert g["final-recipient"] == "rfc822; nobody@b.test"
        assert g["original-recipient"] == "rfc822;nob+ody@b.test"
        assert g["action"] == "failed" and g["status"] == "5.1.1"
        assert g["remote-mta"] == "dns; mx.b.test"
        assert g["diagnostic-code"] == "smtp; 550 5.1.1 no such user"
        assert "Original-Envelope-Id: ENV-1" in parts[1].as_string()
        assert parts[2].get_content_type() == "message/rfc822"  # small message: returned whole
        assert b"hello" in dsns[0]

    run(with_sink(harness, body, FakeSMTP(rcpt_reply=rcpt)))


def test_no_dsn_for_null_sender_or_bounces_or_never(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(sender=""), MSG, rcpts("x@b.test"))
        await h.store.enqueue(
            env(is_bounce=True, sender="postmaster@a.test"), MSG, rcpts("y@b.test")
        )
        await h.store.enqueue(env(), MSG, rcpts("z@b.test", notify=frozenset({"NEVER"})))
        h.runner.wake()
        await h.idle()
        assert h.store.count() == 0
        assert len(h.log.named("queue.attempt")) == 3
        assert h.local.delivered == []

    run(with_sink(harness, body, FakeSMTP(rcpt_reply=lambda a: b"550 5.1.1 no\r\n")))


def test_notify_success_to_a_peer_without_dsn_gives_relayed(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(
            env(ret="HDRS"), MSG, rcpts("bob@b.test", notify=frozenset({"SUCCESS", "FAILURE"}))
        )
        h.runner.wake()
        await h.idle()
        dsns = h.local.dsns()
        assert len(dsns) == 1
        g = status_groups(dsns[0])[0]
        assert g["action"] == "relayed" and g["status"].startswith("2.")
        _, parts = dsn_parts(dsns[0])
        assert parts[2].get_content_type() == "text/rfc822-headers"
        assert b"hello" not in dsns[0]  # RET=HDRS: headers only

    run(with_sink(harness, body, FakeSMTP(extensions=["PIPELINING", "8BITMIME"])))


def test_dsn_parameters_passed_on_to_a_dsn_peer(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        r = Recipient("bob@b.test", frozenset({"SUCCESS"}), "rfc822;bob@b.test")
        await h.store.enqueue(env(ret="FULL", envid="abc"), MSG, (r,))
        h.runner.wake()
        await h.idle()
        t = sink.transactions[0]
        assert "RET=FULL" in t.mail_params and "ENVID=abc" in t.mail_params
        assert t.rcpt_params[0] == ["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@b.test"]
        assert h.local.dsns() == []  # the DSN-capable peer reports success itself

    run(with_sink(harness, body))


def test_size_refused_by_peer_bounces_5_3_4(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG + b"x" * 200, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert sink.transactions == []
        assert not any(c.startswith("MAIL") for c in sink.commands)
        g = status_groups(h.local.dsns()[0])[0]
        assert g["status"] == "5.3.4" and g["action"] == "failed"

    run(with_sink(harness, body, FakeSMTP(extensions=["PIPELINING", "SIZE 100"])))


def test_smtputf8_needed_but_missing_bounces_5_6_7(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(smtputf8=True, body=BodyType.EIGHT_BIT), MSG, rcpts("bøb@b.test"))
        h.runner.wake()
        await h.idle()
        assert sink.transactions == []
        dsn = h.local.dsns()[0]
        _, parts = dsn_parts(dsn)
        assert parts[1].get_content_type() == "message/global-delivery-status"
        assert "Status: 5.6.7" in parts[1].as_string()

    run(with_sink(harness, body, FakeSMTP(extensions=["PIPELINING", "8BITMIME"])))


def test_smtputf8_and_8bitmime_sent_when_offered(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(
            env(sender="álice@a.test", smtputf8=True, body=BodyType.EIGHT_BIT),
            "Subject: café\r\n\r\nçà\r\n".encode(),
            rcpts("bøb@b.test"),
        )
        h.runner.wake()
        await h.idle()
        t = sink.transactions[0]
        assert "SMTPUTF8" in t.mail_params and "BODY=8BITMIME" in t.mail_params
        assert t.rcpts == ["bøb@b.test"] and "çà".encode() in t.data

    run(with_sink(harness, body))


def test_null_mx_and_nxdomain_bounce_at_once(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        h.resolver.mx_records["null.test"] = [(0, "")]
        await h.store.enqueue(env(), MSG, rcpts("x@null.test", "y@nowhere.test"))
        h.runner.wake()
        await h.idle()
        assert h.store.count() == 0
        groups = status_groups(h.local.dsns()[0])
        assert {g["status"] for g in groups} == {"5.1.10", "5.1.2"}
        assert sink.connections == 0

    run(with_sink(harness, body))


def test_dns_failure_defers(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        h.resolver.failing.add("b.test")
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.log.named("queue.attempt")) >= 1)
        a = h.log.named("queue.attempt")[0]
        assert a["result"] == "deferred" and a["status"] == "4.4.3"
        h.resolver.failing.clear()
        await wait_until(lambda: h.store.get(qid) is None)
        assert len(sink.transactions) == 1

    run(with_sink(harness, body))


def test_mx_fallback_greeting_failure_and_dropped_connection(harness: HarnessFactory) -> None:
    greetings = {1: b"", 2: b"421 4.3.2 busy\r\n"}

    async def body(h: Harness, sink: FakeSMTP) -> None:
        h.resolver.mx_records["b.test"] = [
            (20, "mx3.b.test"),
            (10, "mx1.b.test"),
            (10, "mx2.b.test"),
        ]
        for name in ("mx1.b.test", "mx2.b.test", "mx3.b.test"):
            h.resolver.a_records[name] = ["127.0.0.1"]
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert sink.connections == 3
        assert len(sink.transactions) == 1
        a = h.log.named("queue.attempt")
        assert len(a) == 1 and a[0]["mx"] == "mx3.b.test" and a[0]["result"] == "delivered"

    sink = FakeSMTP(greeting=lambda n: greetings.get(n, b"220 ok\r\n"))
    run(with_sink(harness, body, sink))


def test_all_hosts_down_defers_with_connection_error(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await sink.close()  # nothing listens any more
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.log.named("queue.attempt")) >= 1)
        a = h.log.named("queue.attempt")[0]
        assert a["result"] == "deferred" and a["code"] == 451
        assert "cannot connect" in a["reply"]
        m = h.store.list_messages()[0]
        assert m.recipients[0].state == "pending" and m.recipients[0].attempts >= 1

    run(with_sink(harness, body))


def test_connection_reuse_and_per_domain_limit(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        for i in range(12):
            await h.store.enqueue(env(), MSG, rcpts(f"u{i}@b.test"))
        h.runner.start()
        await h.idle()
        assert len(sink.transactions) == 12
        assert sink.max_open <= 2
        # reused, not one per message (2 workers; a slow machine may add a reconnect)
        assert sink.connections <= 4
        assert max(t.connection for t in sink.transactions) <= 4

    run(with_sink(harness, body, start=False, concurrency_per_domain=2))


def test_total_concurrency_limit(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        for i in range(8):
            h.resolver.mx_records[f"d{i}.test"] = [(10, "mx.b.test")]
            await h.store.enqueue(env(), MSG, rcpts(f"u@d{i}.test"))
        h.runner.wake()
        await h.idle()
        assert len(sink.transactions) == 8
        assert sink.max_open <= 3

    run(with_sink(harness, body, concurrency=3))


def test_local_domain_is_delivered_locally_without_lookup(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("carol@a.test", "bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert [[r.address for r in e.recipients] for e, _ in h.local.delivered] == [
            ["carol@a.test"]
        ]
        assert h.resolver.lookups["a.test"] == 0
        assert sink.transactions[0].rcpts == ["bob@b.test"]

    run(with_sink(harness, body))


def test_delay_warning_then_expiry(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.local.dsns()) >= 1, 10)
        groups = status_groups(h.local.dsns()[0])
        assert groups[0]["action"] == "delayed" and groups[0]["status"].startswith("4.")
        assert "will-retry-until" in groups[0]
        await wait_until(lambda: h.store.get(qid) is None, 10)
        assert len(h.local.dsns()) == 2  # one delay warning, then the failure
        g = status_groups(h.local.dsns()[1])[0]
        assert g["action"] == "failed" and g["status"] == "4.4.7"
        assert "451" in g["diagnostic-code"]

    sink = FakeSMTP(rcpt_reply=lambda a: b"451 4.2.1 mailbox busy\r\n")
    run(with_sink(harness, body, sink, delay_warning=0.3, max_queue_time=1.2))


def test_operator_bounce_and_remove(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        a = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        b = await h.store.enqueue(env(), MSG, rcpts("carol@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.log.named("queue.attempt")) >= 2)
        assert h.store.request_bounce(a, time.time())
        assert h.store.remove(b)
        await wait_until(lambda: h.store.count() == 0, 10)
        dsns = h.local.dsns()
        assert len(dsns) == 1 and "5.0.0" in dsns[0].decode()

    run(
        with_sink(
            harness, body, FakeSMTP(rcpt_reply=lambda a: b"452 4.2.2 full\r\n"), retry=(30.0,)
        )
    )


def test_signer_hook_is_applied_to_outgoing_mail(harness: HarnessFactory) -> None:
    seen: list[str] = []

    def signer(message: bytes, domain: str) -> bytes:
        seen.append(domain)
        return b"DKIM-Signature: v=1; d=" + domain.encode() + b"\r\n" + message

    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert sink.transactions[0].data.startswith(b"DKIM-Signature: v=1; d=a.test\r\n")
        assert seen == ["a.test"]

    signing.set_signer(signer)
    try:
        run(with_sink(harness, body))
    finally:
        signing.set_signer(None)


def test_failing_local_dsn_delivery_keeps_the_message(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        h.local.fail_with = RuntimeError
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(h.log.named("queue.dsn")) >= 1)
        assert h.store.get(qid) is not None  # not lost: the DSN is retried
        h.local.fail_with = None
        await wait_until(lambda: h.store.get(qid) is None, 10)
        assert len(h.local.dsns()) == 1
        assert len(h.log.named("queue.attempt")) == 1  # the recipient was not tried again

    run(with_sink(harness, body, FakeSMTP(rcpt_reply=lambda a: b"550 5.1.1 no\r\n")))


def test_data_rejection_and_timeout(harness: HarnessFactory) -> None:
    def data(t: Transaction) -> bytes:
        return b"554 5.7.1 spam\r\n" if b"spam" in t.data else b"250 ok\r\n"

    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), b"Subject: spam\r\n\r\nspam\r\n", rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        g = status_groups(h.local.dsns()[0])[0]
        assert g["status"] == "5.7.1" and g["diagnostic-code"] == "smtp; 554 5.7.1 spam"

    run(with_sink(harness, body, FakeSMTP(data_reply=data)))


def test_smtputf8_requested_but_not_needed_is_sent_plainly(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(smtputf8=True), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        assert len(sink.transactions) == 1
        assert "SMTPUTF8" not in sink.transactions[0].mail_params
        assert h.local.dsns() == []

    run(with_sink(harness, body, FakeSMTP(extensions=["PIPELINING"])))


def test_flush_during_an_attempt_is_not_lost(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: h.runner.in_flight == 1)
        assert h.store.flush(time.time()) == 1  # while the first attempt is under way
        await wait_until(lambda: len(h.log.named("queue.attempt")) >= 2, 10)
        m = h.store.get(qid)
        assert m is None or m.attempts >= 1

    # the first attempt stalls 0.5 s at the end of DATA, then fails; retry is an hour away
    sink = FakeSMTP(stall_after_data=0.5, data_reply=lambda t: b"451 4.3.0 later\r\n")
    run(with_sink(harness, body, sink, retry=(3600.0,)))


def test_a_database_failure_while_recording_strands_nothing(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        real_finish = h.store.finish
        calls = {"n": 0}

        def flaky_finish(*args: Any, **kw: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("disk I/O error")
            real_finish(*args, **kw)

        h.store.finish = flaky_finish  # type: ignore[method-assign]
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: h.store.get(qid) is None, 10)
        assert calls["n"] == 2  # the lease was given back and the message tried again
        assert [e for e in h.log.named("queue.error") if e.get("stage") == "finalize"]
        assert len(sink.transactions) == 2  # at least once: a duplicate, not a loss

    run(with_sink(harness, body))


def test_local_success_notice_and_removed_during_attempt(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("carol@a.test", notify=frozenset({"SUCCESS"})))
        h.runner.wake()
        await h.idle()
        g = status_groups(h.local.dsns()[0])[0]
        assert g["action"] == "delivered" and "remote-mta" not in g
        # removed while its attempt is under way: no DSN, nothing left behind
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: h.runner.in_flight == 1)
        assert h.store.remove(qid)
        await h.idle()
        assert len(h.local.dsns()) == 1 and h.store.count() == 0

    run(
        with_sink(harness, body, FakeSMTP(stall_after_data=0.3, data_reply=lambda t: b"554 no\r\n"))
    )


def test_missing_message_file_bounces_instead_of_looping(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.store.message_path(qid).unlink()
        h.runner.start()
        await h.idle()
        assert h.store.count() == 0 and sink.transactions == []
        g = status_groups(h.local.dsns()[0])[0]
        assert g["status"] == "5.3.0"

    run(with_sink(harness, body, start=False))


def test_connection_kept_a_moment_for_mail_that_follows(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(sink.transactions) == 1)
        await asyncio.sleep(0.3)
        await h.store.enqueue(env(), MSG, rcpts("carol@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(sink.transactions) == 2)
        assert sink.connections == 1
        await wait_until(lambda: "QUIT" in sink.commands, 5)  # closed once idle

    run(with_sink(harness, body))


def test_idle_connection_yields_its_slot_to_waiting_mail(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: len(sink.transactions) == 1)
        started = time.monotonic()
        await h.store.enqueue(env(), MSG, rcpts("dave@c.test"))
        h.runner.wake()
        await wait_until(lambda: len(sink.transactions) == 2)
        assert time.monotonic() - started < 1.8  # not held back by b.test's idle connection
        assert sink.connections == 2

    run(with_sink(harness, body, concurrency=1))


def test_binarymime_goes_by_bdat_or_bounces(harness: HarnessFactory) -> None:
    binary = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\n.\r\nraw\r"

    async def body(h: Harness, sink: FakeSMTP) -> None:
        await h.store.enqueue(env(body=BodyType.BINARY), binary, rcpts("bob@b.test"))
        h.runner.wake()
        await h.idle()
        t = sink.transactions[0]
        assert t.data == binary  # byte for byte: no dot-stuffing, no line-end changes
        assert "BODY=BINARYMIME" in t.mail_params
        assert not any(c == "DATA" for c in sink.commands)
        sink.extensions = ["PIPELINING", "8BITMIME"]
        await h.store.enqueue(env(body=BodyType.BINARY), binary, rcpts("dave@c.test"))
        h.runner.wake()
        await h.idle(15)
        g = status_groups(h.local.dsns()[0])[0]
        assert g["status"] == "5.6.3" and len(sink.transactions) == 1

    exts = ["PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME"]
    run(with_sink(harness, body, FakeSMTP(extensions=exts)))


def test_two_runners_on_one_queue_deliver_each_message_once(harness: HarnessFactory) -> None:
    from merpati.queue.runner import QueueRunner

    async def body(h: Harness, sink: FakeSMTP) -> None:
        other_store = QueueStore.open(h.store.root.parent)
        other = QueueRunner(other_store, h.runner.deps)
        for i in range(40):
            await h.store.enqueue(env(), MSG, rcpts(f"u{i}@b.test"))
        h.runner.start()
        other.start()
        try:
            await wait_until(lambda: h.store.count() == 0, 20)
        finally:
            await other.stop(2)
            other_store.close()
        rcpts_seen = [r for t in sink.transactions for r in t.rcpts]
        assert sorted(rcpts_seen) == sorted(f"u{i}@b.test" for i in range(40))

    run(with_sink(harness, body, start=False))


def test_a_notice_that_never_goes_through_is_given_up_in_the_end(harness: HarnessFactory) -> None:
    async def body(h: Harness, sink: FakeSMTP) -> None:
        h.local.fail_with = RuntimeError
        qid = await h.store.enqueue(env(), MSG, rcpts("bob@b.test"))
        h.runner.wake()
        await wait_until(lambda: h.store.get(qid) is None, 10)
        tries = [e for e in h.log.named("queue.dsn") if e["result"] == "error"]
        assert len(tries) >= 2  # retried, then dropped after twice max_queue_time

    sink = FakeSMTP(rcpt_reply=lambda a: b"550 5.1.1 no\r\n")
    run(with_sink(harness, body, sink, max_queue_time=0.4, delay_warning=100.0, retry=(0.2,)))
