"""Limits and bad input against a live server: each refused cleanly, none stalls another
session (rfc5321:4.5.3.2 timeouts, transaction deadline, error count, connection limits)."""

from __future__ import annotations

import base64
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_inproc import InProcServer, RawClient

ALICE = "alice@example.org"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcServer]:
    server = InProcServer(
        tmp_path / "data",
        command_timeout=0.6,
        data_timeout=0.8,
        transaction_deadline=1.5,
        bad_commands=5,
        message_size=20_000,
        recipients=3,
        connections_per_ip=6,
    )
    server.add_user(ALICE, "alice-pw-1")
    yield server
    server.stop()


def connect(srv: InProcServer) -> RawClient:
    c = RawClient(srv.host, srv.ports["smtp"])
    assert c.reply().startswith("220 ")
    return c


def send_one(srv: InProcServer, subject: str) -> float:
    started = time.monotonic()
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.sendmail("s@remote.example", [ALICE], f"Subject: {subject}\r\n\r\nx\r\n".encode())
    return time.monotonic() - started


def test_idle_client_times_out(srv: InProcServer) -> None:
    c = connect(srv)
    started = time.monotonic()
    assert c.reply() == "421 4.4.2 Timeout, closing connection"
    assert 0.5 < time.monotonic() - started < 3
    assert c.closed()


def test_silent_client_in_data_times_out(srv: InProcServer) -> None:
    c = connect(srv)
    c.send(b"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    for _ in range(4):
        c.reply()
    c.send(b"Subject: half\r\n")
    assert c.reply() == "421 4.4.2 Timeout, closing connection"
    assert srv.inbox(ALICE) == []


def test_slow_drip_hits_the_transaction_deadline_without_stalling_others(
    srv: InProcServer,
) -> None:
    c = connect(srv)
    c.send(b"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    for _ in range(4):
        c.reply()
    stop = threading.Event()

    def drip() -> None:  # one byte every 0.2 s: never idle long enough for the timeout
        while not stop.is_set():
            try:
                c.send(b"x")
            except OSError:
                return
            time.sleep(0.2)

    t = threading.Thread(target=drip)
    t.start()
    try:
        assert send_one(srv, "meanwhile") < 2  # another client is served at once
        started = time.monotonic()
        reply = c.reply()
        assert reply == "421 4.4.2 Transaction took too long, closing connection"
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        t.join()
    subjects = [m for m in srv.inbox(ALICE) if b"Subject: meanwhile" in m]
    assert len(subjects) == 1 and len(srv.inbox(ALICE)) == 1


def test_too_many_errors_closes_with_421(srv: InProcServer) -> None:
    c = connect(srv)
    replies = [c.cmd(b"BOGUS") for _ in range(4)]
    assert all(r.startswith("500 5.5.2") for r in replies)
    c.send(b"BOGUS\r\n")
    assert c.reply().startswith("500 5.5.2")
    assert c.reply() == "421 4.7.0 Too many errors, closing connection"
    assert c.closed()


def test_size_recipients_line_limits_and_nul(srv: InProcServer) -> None:
    c = connect(srv)
    c.cmd("EHLO a")
    assert c.cmd("MAIL FROM:<s@remote.example> SIZE=20001").startswith("552 5.3.4")
    assert c.cmd(b"NOOP " + b"x" * 600).startswith("500 5.5.2")
    assert c.cmd(b"NOOP \0").startswith("500 5.5.2")
    c.cmd("MAIL FROM:<s@remote.example>")
    c.cmd("RSET")
    c.cmd("MAIL FROM:<s@remote.example>")
    for _ in range(3):
        assert c.cmd("RCPT TO:<alice@example.org>").startswith("250")
    assert c.cmd("RCPT TO:<alice@example.org>") == "452 4.5.3 Too many recipients"
    assert c.cmd("DATA").startswith("354")
    c.send(b"x" * 998 + b"\r\n")
    for _ in range(30):
        c.send(b"y" * 998 + b"\r\n")  # 30 KB, over the 20 KB limit: drained, refused once
    assert c.cmd(b".") == "552 5.3.4 Message too big"
    # Still in sync:
    assert c.cmd("NOOP") == "250 2.0.0 OK"
    c.close()
    c = connect(srv)  # a fresh session: the errors above used up the error budget
    c.cmd("EHLO a")
    c.cmd("MAIL FROM:<s@remote.example>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    assert c.cmd(b"Subject: nul\r\n\r\na\0b\r\n.") == "550 5.6.0 NUL byte in message"
    c.cmd("MAIL FROM:<s@remote.example>")
    c.cmd("RCPT TO:<alice@example.org>")
    c.cmd("DATA")
    assert c.cmd(b"Subject: lf\nbare\r\n.").startswith("550 5.6.0 Bare CR or LF")
    assert srv.inbox(ALICE) == []


def test_connections_per_ip_get_the_busy_reply(srv: InProcServer) -> None:
    held = [connect(srv) for _ in range(6)]
    extra = socket.create_connection((srv.host, srv.ports["smtp"]), 5)
    data = extra.recv(200)
    assert data == b"421 4.7.0 Too many connections, try later\r\n"
    extra.close()
    for c in held:
        c.close()


def test_auth_failures_are_throttled(tmp_path: Path) -> None:
    server = InProcServer(tmp_path / "d", plaintext_auth=True, auth_failures=2)
    try:
        server.add_user(ALICE, "alice-pw-1")
        c = RawClient(server.host, server.ports["submission"])
        c.reply()
        c.cmd("EHLO a")
        bad = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0wrong").decode()
        times = []
        for _ in range(4):
            started = time.monotonic()
            assert c.cmd(bad).startswith("535 5.7.8")
            times.append(time.monotonic() - started)
        assert times[3] > times[0] + 1.5  # two free failures, then 1 s, then 2 s
        c.close()
    finally:
        server.stop()


def test_a_command_trickling_in_byte_by_byte_still_times_out(srv: InProcServer) -> None:
    c = connect(srv)
    started = time.monotonic()
    closed_by_server = False
    for byte in b"NOOP and a very long argument that never ends":
        try:
            c.send(bytes([byte]))
        except OSError:
            closed_by_server = True
            break
        time.sleep(0.1)  # each byte well inside the 0.6 s command timeout
        if time.monotonic() - started > 3:
            break
    if not closed_by_server:
        assert c.reply() == "421 4.4.2 Timeout, closing connection"
    assert time.monotonic() - started < 2.5


def test_shutdown_lets_a_busy_session_finish_its_message(tmp_path: Path) -> None:
    server = InProcServer(tmp_path / "d")
    server.add_user(ALICE, "alice-pw-1")
    c = connect(server)
    c.send(b"EHLO a\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    assert [c.reply()[:3] for _ in range(4)] == ["250", "250", "250", "354"]
    c.send(b"Subject: last one\r\n\r\nhalf")
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.3)  # the server is stopping; this session is mid-message
    c.send(b" and the rest\r\n.\r\n")
    assert c.reply().startswith("250 2.0.0")
    assert c.reply() == "421 4.3.2 Server shutting down, try later"
    stopper.join(10)
    assert not stopper.is_alive()
