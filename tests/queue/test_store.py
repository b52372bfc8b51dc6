"""The durable store: enqueue writes file then rows, leases exclude other runners, a dead
process's lease is released, operator commands, orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from merpati.delivery.api import BodyType, Envelope, Recipient
from merpati.queue.store import ORPHAN_AGE, QueueStore, RecipientUpdate

ENV = Envelope(
    "alice@a.test",
    (),
    body=BodyType.EIGHT_BIT,
    smtputf8=True,
    ret="HDRS",
    envid="id1",
    auth_user="alice@a.test",
)
RCPTS = (
    Recipient("bob@b.test", frozenset({"SUCCESS"}), "rfc822;bob@b.test"),
    Recipient("c@c.test"),
)


def test_enqueue_round_trip(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    qid = s.enqueue_sync(ENV, b"hello", RCPTS, now=100.0)
    assert (tmp_path / "queue" / "msg" / qid).read_bytes() == b"hello"
    m = s.get(qid)
    assert m is not None
    assert m.envelope.mail_from == "alice@a.test" and m.envelope.smtputf8
    assert m.envelope.body is BodyType.EIGHT_BIT and m.envelope.ret == "HDRS"
    assert m.envelope.envid == "id1" and m.size == 5 and m.created == 100.0
    assert [r.address for r in m.recipients] == ["bob@b.test", "c@c.test"]
    assert m.recipients[0].notify == {"SUCCESS"} and m.recipients[0].orcpt == "rfc822;bob@b.test"
    assert m.envelope.recipients[0].notify == {"SUCCESS"}
    # another connection (the CLI) sees it
    other = QueueStore.open(tmp_path)
    assert [x.id for x in other.list_messages()] == [qid]


def test_claim_lease_renew_release(tmp_path: Path) -> None:
    a = QueueStore.open(tmp_path)
    b = QueueStore.open(tmp_path)
    q1 = a.enqueue_sync(ENV, b"1", RCPTS, now=10.0)
    q2 = a.enqueue_sync(ENV, b"2", RCPTS, now=20.0)
    assert [m.id for m in a.claim_due(15.0, 60, 10, set())] == [q1]
    assert [m.id for m in b.claim_due(30.0, 5000, 10, set())] == [q2]  # q1 is leased by a
    assert b.claim_due(30.0, 60, 10, set()) == []
    a.renew_leases(1000.0)
    assert b.claim_due(500.0, 60, 10, set()) == []
    assert [m.id for m in b.claim_due(1001.0, 60, 10, set())] == [q1]  # a's lease expired
    b.release([q1, q2])
    assert len(a.claim_due(1001.0, 60, 10, set())) == 2


def test_lease_of_a_dead_process_is_released(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    qid = s.enqueue_sync(ENV, b"x", RCPTS, now=time.time())
    code = (
        "import sys; sys.path.insert(0, 'src');"
        "from pathlib import Path; from merpati.queue.store import QueueStore;"
        f"s = QueueStore.open(Path({str(tmp_path)!r})); import time;"
        "print(len(s.claim_due(time.time(), 3600, 10, set())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "1"
    assert s.claim_due(time.time(), 60, 10, set()) == []  # still leased
    assert s.release_stale_leases(time.time()) == 1
    assert [m.id for m in s.claim_due(time.time(), 60, 10, set())] == [qid]


def test_record_finish_and_operator_commands(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    qid = s.enqueue_sync(ENV, b"x", RCPTS, now=10.0)
    s.record(qid, [RecipientUpdate(0, "delivered", 250, "2.0.0", "250 ok", "mx.b.test")])
    s.record(qid, [RecipientUpdate(1, "pending", 451, "4.0.0", "451 later", "mx.c.test")])
    s.finish(qid, attempts=1, next_attempt=500.0, warned=True, delete=False)
    m = s.get(qid)
    assert m is not None and m.attempts == 1 and m.warned and m.next_attempt == 500.0
    assert [r.state for r in m.recipients] == ["delivered", "pending"]
    assert m.recipients[1].last_reply == "451 later" and m.recipients[1].attempts == 1
    assert s.next_due() == 500.0
    assert s.retry(qid, 50.0) and s.get(qid).next_attempt == 50.0  # type: ignore[union-attr]
    assert not s.retry("nope", 50.0)
    assert s.flush(40.0) == 1
    assert s.request_bounce(qid, 45.0) and s.get(qid).bounce_requested  # type: ignore[union-attr]
    assert s.remove(qid) and s.get(qid) is None and not s.remove(qid)
    assert not (tmp_path / "queue" / "msg" / qid).exists()


def test_finish_delete_removes_file(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    qid = s.enqueue_sync(ENV, b"x", RCPTS)
    s.finish(qid, attempts=1, next_attempt=0, warned=False, delete=True)
    assert s.count() == 0 and not s.message_path(qid).exists()


def test_orphans_are_removed_when_old(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    keep = s.enqueue_sync(ENV, b"x", RCPTS)
    orphan = s.msg_dir / "0000orphan"
    orphan.write_bytes(b"lost")
    young = s.tmp_dir / "0000young"
    young.write_bytes(b"writing")
    old = time.time() - ORPHAN_AGE - 10
    os.utime(orphan, (old, old))
    assert s.remove_orphans(time.time()) == 1
    assert not orphan.exists() and young.exists() and s.message_path(keep).exists()


def test_operator_poke_during_an_attempt_wins_over_the_schedule(tmp_path: Path) -> None:
    s = QueueStore.open(tmp_path)
    qid = s.enqueue_sync(ENV, b"x", RCPTS, now=10.0)
    assert s.claim_due(20.0, 60, 10, set())
    assert s.retry(qid, 25.0)  # the operator, while the runner works on it
    s.finish(qid, attempts=1, next_attempt=5000.0, warned=False, delete=False)
    assert s.get(qid).next_attempt == 25.0  # type: ignore[union-attr]
    assert s.claim_due(30.0, 60, 10, set())  # claimed again: the poke is used up
    s.finish(qid, attempts=2, next_attempt=6000.0, warned=False, delete=False)
    assert s.get(qid).next_attempt == 6000.0  # type: ignore[union-attr]


def test_a_live_runner_keeps_its_lease_a_reused_pid_does_not(tmp_path: Path) -> None:
    import socket

    a = QueueStore.open(tmp_path)
    b = QueueStore.open(tmp_path)  # another runner of this very process
    q1 = a.enqueue_sync(ENV, b"1", RCPTS, now=10.0)
    q2 = a.enqueue_sync(ENV, b"2", RCPTS, now=11.0)
    assert [m.id for m in a.claim_due(20.0, 5000, 1, set())] == [q1]
    assert b.release_stale_leases(30.0) == 0  # a is alive: its lease stays
    # q2 leased by "this pid" in an earlier life (another start time): released
    ghost = f"{socket.gethostname()}:{os.getpid()}:1:dead"
    with a._fast_tx() as db:
        db.execute(
            "UPDATE messages SET lease_owner = ?, lease_until = 9999 WHERE id = ?", (ghost, q2)
        )
    assert b.release_stale_leases(30.0) == 1
    assert [m.id for m in b.claim_due(30.0, 60, 10, set())] == [q2]
