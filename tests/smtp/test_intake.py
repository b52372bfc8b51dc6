"""The intake journal: the record format and its recovery (sans server), then the SMTP server
answering after the journal fsync and delivering right after, over real sockets."""

from __future__ import annotations

import smtplib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_inproc import InProcServer

from harness import eventually
from merpati.delivery.api import Envelope, Recipient
from merpati.delivery.codec import envelope_from_dict, envelope_to_dict
from merpati.delivery.journal import (
    KIND_DONE,
    KIND_MSG,
    SegmentWriter,
    done_payload,
    encode,
    msg_payload,
    read_payload,
    scan,
    segment_name,
    segments,
    split_msg,
)

ALICE = "alice@example.org"
BOB = "bob@example.org"


def _msg(seq: int, rcpt: str = ALICE, body: bytes = b"hello\r\n") -> bytes:
    env = Envelope("s@remote.example", (Recipient(rcpt),), extra={"delivery_key": f"k{seq}"})
    return encode(KIND_MSG, seq, msg_payload(envelope_to_dict(env), b"Subject: t\r\n\r\n" + body))


# -- the journal on disk ---------------------------------------------------------------------


def test_scan_returns_messages_without_done(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 1)
    w.append([_msg(1), _msg(2), _msg(3)])
    w.append([encode(KIND_DONE, 0, done_payload([1, 3]))])
    w.close()
    found = scan(tmp_path)
    assert sorted(found.pending) == [2]
    assert found.next_seq == 4
    header, message = split_msg(read_payload(found.pending[2]))
    env = envelope_from_dict(header)
    assert env.mail_from == "s@remote.example" and env.recipients[0].address == ALICE
    assert env.extra == {"delivery_key": "k2"}
    assert message.endswith(b"hello\r\n")


def test_a_torn_tail_is_ignored_and_the_next_segment_is_read(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path, 1)
    w.append([_msg(1), _msg(2)])
    w.close()
    path = tmp_path / segment_name(1)
    data = path.read_bytes()
    assert not data[w.size :].strip(b"\0")  # zeros written ahead of the records
    data = data[: w.size]
    path.write_bytes(data[:-3])  # the crash cut record 2 short: it was never acknowledged
    w2 = SegmentWriter(tmp_path, 5)
    w2.append([_msg(5), encode(KIND_DONE, 0, done_payload([1]))])
    w2.close()
    found = scan(tmp_path)
    assert sorted(found.pending) == [5]
    assert found.torn == [path]
    assert found.next_seq == 6
    # A flipped byte inside a record is caught by its CRC, not delivered as something else.
    corrupt = bytearray(data)
    corrupt[40] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert sorted(scan(tmp_path).pending) == [5]


def test_an_empty_segment_still_reserves_its_name(tmp_path: Path) -> None:
    SegmentWriter(tmp_path, 7).close()
    assert scan(tmp_path).next_seq == 8  # the next writer may not reuse 7's name
    SegmentWriter(tmp_path, 8).close()
    assert [p.name for p in segments(tmp_path)] == [segment_name(7), segment_name(8)]


def test_codec_round_trips_every_envelope_field() -> None:
    env = Envelope(
        "a@b.example",
        (Recipient("c@d.example", frozenset({"SUCCESS", "DELAY"}), "rfc822;c@d.example"),),
        smtputf8=True,
        ret="HDRS",
        envid="QQ314159",
        auth_user="a@b.example",
        client_ip="127.0.0.1",
        helo="client.example",
        extra={"folder": "Junk"},
    )
    assert envelope_from_dict(envelope_to_dict(env)) == env
    assert envelope_from_dict(envelope_to_dict(env)).extra == {"folder": "Junk"}


# -- the server with the intake --------------------------------------------------------------


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcServer]:
    server = InProcServer(tmp_path / "data", intake=True)
    server.add_user(ALICE, "alice-pw-1")
    server.add_user(BOB, "bob-pw-1")
    yield server
    server.stop()


def test_250_names_the_journal_record_and_the_mailbox_gets_it(srv: InProcServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        c.mail("s@remote.example")
        c.rcpt(ALICE)
        c.rcpt(BOB)
        code, text = c.data(b"Subject: hi\r\n\r\nbody\r\n")
    assert code == 250 and b"queued as j" in text
    stored = eventually(lambda: srv.inbox(ALICE) and srv.inbox(BOB) and srv.inbox(ALICE))
    assert stored[0].endswith(b"\r\n\r\nbody\r\n")
    assert b"Return-Path: <s@remote.example>" in stored[0]
    # Delivered: the DONE record follows, and nothing is left to replay.
    journal = srv.config.data_dir / "intake"
    eventually(lambda: not scan(journal).pending)


def test_quota_found_at_delivery_goes_to_the_queue_for_the_bounce(srv: InProcServer) -> None:
    srv.app.accounts.set_quota(BOB, 2000)
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        # Over bob's quota only once the message is there: accepted (it is durable), and
        # bob's copy is handed to the queue, which retries it and bounces if it must.
        c.sendmail("s@remote.example", [ALICE, BOB], b"Subject: big\r\n\r\n" + b"x\r\n" * 1500)
    assert srv.queue is not None
    queue = srv.queue
    eventually(lambda: queue.items)
    ((env, message, rcpts),) = queue.items
    assert [r.address for r in rcpts] == [BOB] and env.mail_from == "s@remote.example"
    assert message.endswith(b"x\r\n" * 1500)
    assert len(srv.inbox(ALICE)) == 1 and srv.inbox(BOB) == []


def test_replay_after_a_crash_delivers_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal = data / "intake"
    journal.mkdir(parents=True)
    # What a killed server left: three journaled messages, the first one done, the second one
    # already in the mailbox but its DONE not yet written.
    w = SegmentWriter(journal, 1)
    w.append([_msg(1, body=b"one\r\n"), _msg(2, body=b"two\r\n"), _msg(3, body=b"three\r\n")])
    w.append([encode(KIND_DONE, 0, done_payload([1]))])
    w.close()
    first = InProcServer(data)
    first.add_user(ALICE, "alice-pw-1")
    assert first.app.deliver is not None
    deliver = first.app.deliver
    pending = scan(journal).pending
    header, message = split_msg(read_payload(pending[2]))
    report = first.call(deliver(envelope_from_dict(header), message))
    assert report.all_ok
    first.stop()

    server = InProcServer(data, intake=True)
    try:
        bodies = eventually(lambda: len(server.inbox(ALICE)) == 2 and server.inbox(ALICE))
        assert sorted(b.rsplit(b"\r\n\r\n", 1)[1] for b in bodies) == [b"three\r\n", b"two\r\n"]
        eventually(lambda: not scan(journal).pending)
        # The old segment goes once everything in it is done and a newer one holds the rest.
        eventually(lambda: segment_name(1) not in [p.name for p in segments(journal)])
    finally:
        server.stop()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_scan_survives_any_bytes(garbage: bytes, cut: int) -> None:
    """Whatever a crash or a stranger left in the journal directory, start-up reads what is
    valid and ignores the rest: no exception."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        good = _msg(1)
        (directory / segment_name(1)).write_bytes(good + garbage)
        (directory / segment_name(2)).write_bytes(good[:cut] + garbage)
        (directory / "not-a-segment.log").write_bytes(garbage)
        found = scan(directory)
        assert 1 in found.pending
        assert found.next_seq >= 3


def test_messages_of_one_session_keep_their_order(srv: InProcServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        for n in range(12):
            c.sendmail("s@remote.example", [ALICE], f"Subject: n{n}\r\n\r\nbody\r\n".encode())
    stored = eventually(lambda: len(srv.inbox(ALICE)) == 12 and srv.inbox(ALICE))
    subjects = [m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in stored]
    assert subjects == [f"n{n}".encode() for n in range(12)]  # UID order is arrival order


def test_each_process_claims_a_journal_and_adopts_those_of_gone_ones(tmp_path: Path) -> None:
    """Two servers on one data dir each write their own journal (``intake``, ``intake.1``);
    a journal whose process is gone is taken over by the next one to start."""
    import fcntl
    import os

    from merpati.delivery.journal import LOCK_NAME, adopt, claim

    data = tmp_path / "data"
    data.mkdir()
    first = claim(data)  # a live server holds intake/
    assert first.directory == data / "intake" and not first.orphans
    second = claim(data)
    assert second.directory == data / "intake.1"
    # intake.2: left by a server that died with two undelivered messages, one already done.
    gone = data / "intake.2"
    gone.mkdir()
    w = SegmentWriter(gone, 1)
    w.append([_msg(1, body=b"one\r\n"), _msg(2, body=b"two\r\n"), _msg(3, body=b"three\r\n")])
    w.append([encode(KIND_DONE, 0, done_payload([2]))])
    w.close()
    os.close(second.lock_fd)  # the second server stops: its journal is free again
    third = claim(data)
    assert third.directory == data / "intake.1"
    assert [p.name for p, _ in third.orphans] == ["intake.2"]
    writer = SegmentWriter(third.directory, 10)
    refs = adopt(third.orphans, writer, 10)
    assert [r.seq for r in refs] == [10, 11] and not gone.exists()
    copies = [split_msg(read_payload(r)) for r in refs]
    assert [m.rsplit(b"\r\n\r\n", 1)[1] for _, m in copies] == [b"one\r\n", b"three\r\n"]
    # The delivery keys come along: a copy its old process delivered is not stored twice.
    assert [envelope_from_dict(h).extra["delivery_key"] for h, _ in copies] == ["k1", "k3"]
    assert sorted(scan(third.directory).pending) == [10, 11]
    fd = os.open(data / "intake" / LOCK_NAME, os.O_RDWR)
    with pytest.raises(BlockingIOError):  # the first server still holds its own
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    writer.close()
    os.close(first.lock_fd)
    os.close(third.lock_fd)


def test_a_server_delivers_what_a_gone_servers_journal_holds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gone = data / "intake.3"
    gone.mkdir(parents=True)
    (data / "intake").mkdir()  # free: the server's own; intake.3 is adopted
    w = SegmentWriter(gone, 1)
    w.append([_msg(1, body=b"orphan\r\n")])
    w.close()
    server = InProcServer(data, intake=True)
    try:
        server.add_user(ALICE, "alice-pw-1")
        bodies = eventually(lambda: server.inbox(ALICE))
        assert [b.rsplit(b"\r\n\r\n", 1)[1] for b in bodies] == [b"orphan\r\n"]
        assert not gone.exists()
    finally:
        server.stop()


def test_a_slow_disk_moves_journal_writes_to_the_writer_thread(
    srv: InProcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journal writes run on the event loop's thread only while they are fast; past the
    threshold (here: any write) they go to the writer thread, and everything still works."""
    import threading

    from merpati.delivery import intake as intake_module
    from merpati.delivery.journal import SegmentWriter as Writer

    threads: set[str] = set()
    original = Writer.append

    def append(self: Writer, records: list[bytes], sync: bool = True) -> int:
        if sync:
            threads.add(threading.current_thread().name)
        return original(self, records, sync)

    monkeypatch.setattr(Writer, "append", append)

    def send(tag: str) -> None:
        with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
            for n in range(3):
                c.sendmail("s@remote.example", [ALICE], f"Subject: {tag}{n}\r\n\r\nb\r\n".encode())

    send("fast")  # a fast disk: on the loop's own thread
    assert threads and not any(name.startswith("intake-journal") for name in threads)
    threads.clear()
    monkeypatch.setattr(intake_module, "INLINE_SYNC_SECONDS", 0.0)
    send("slow")
    assert eventually(lambda: len(srv.inbox(ALICE)) == 6)
    assert threads and all(name.startswith("intake-journal") for name in threads)


def test_a_message_the_store_cannot_take_fails_alone_not_its_group(
    srv: InProcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries go to the store in groups; one message it fails on (here: its MIME scan
    raises) goes to the queue for a retry, and the rest of its group is delivered."""
    from merpati.mailstore.embedded import mailbox

    real_scan = mailbox.scan

    def scan(data: bytes):  # type: ignore[no-untyped-def]
        if b"POISON" in data:
            raise ValueError("a scanner bug")
        return real_scan(data)

    monkeypatch.setattr(mailbox, "scan", scan)
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        for body in (b"one", b"POISON", b"three"):
            c.sendmail("s@remote.example", [ALICE], b"Subject: g\r\n\r\n" + body + b"\r\n")
    stored = eventually(lambda: len(srv.inbox(ALICE)) == 2 and srv.inbox(ALICE))
    assert sorted(m.rsplit(b"\r\n\r\n", 1)[1] for m in stored) == [b"one\r\n", b"three\r\n"]
    assert srv.queue is not None
    queue = srv.queue
    ((_, message, rcpts),) = eventually(lambda: queue.items)
    assert b"POISON" in message and [r.address for r in rcpts] == [ALICE]
