"""``workers = 2``: a second process serves IMAP and POP3 on the sockets the main process
bound; it sees mail the main process delivers, is restarted when it dies, and never outlives
the main process."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import MerpatiServer, eventually

ALICE, PASSWORD = "alice@example.org", "workers-pw-1"


def _worker_pids(srv: MerpatiServer) -> list[int]:
    return [int(p) for p in re.findall(r"event=worker\.ready index=1 pid=(\d+)", srv.log())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by the main process) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@contextmanager
def _main_paused(srv: MerpatiServer) -> Iterator[None]:
    """SIGSTOP the main process: every new connection is then the worker's."""
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        srv.proc.send_signal(signal.SIGCONT)


def _start(server_factory: Callable[..., MerpatiServer], extra_toml: str = "") -> MerpatiServer:
    srv = server_factory(
        extra_toml, listeners=("smtp", "imap", "pop3"), allow_plaintext_auth=True, workers=2
    )
    srv.add_user(ALICE, PASSWORD)
    eventually(lambda: _worker_pids(srv))
    return srv


def test_the_worker_serves_imap_and_pop3_and_sees_new_mail(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    srv = _start(server_factory)
    with smtplib.SMTP(*srv.address("smtp"), timeout=10) as c:
        c.sendmail("s@remote.example", [ALICE], b"Subject: one\r\n\r\nfirst\r\n")
    eventually(lambda: len(list(srv.data_dir.glob("mail/*/*/new/*"))) == 1)  # delivered
    with _main_paused(srv):
        m = imaplib.IMAP4(*srv.address("imap"), timeout=10)
        m.login(ALICE, PASSWORD)
        assert m.select("INBOX")[1] == [b"1"]
        typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
        assert typ == "OK" and data[0][1] == b"first\r\n"  # type: ignore[index]
        pop = poplib.POP3(*srv.address("pop3"), timeout=10)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        assert m.readline().startswith(b"+")
    # The main process delivers; the worker's IDLE hears of it through the store's feed.
    with smtplib.SMTP(*srv.address("smtp"), timeout=10) as c:
        c.sendmail("s@remote.example", [ALICE], b"Subject: two\r\n\r\nsecond\r\n")
    assert m.sock is not None
    m.sock.settimeout(3)
    assert m.readline() == b"* 2 EXISTS\r\n"
    m.send(b"DONE\r\n")
    line = m.readline()
    while line.startswith(b"* "):  # \Recent and the like
        line = m.readline()
    assert line.startswith(tag + b" OK")
    m.logout()
    assert "id=w1." in srv.log()  # the sessions above were the worker's
    assert srv.stop() == 0
    (pid,) = _worker_pids(srv)
    assert not _alive(pid)
    assert "event=worker.stopped index=1" in srv.log()


def test_a_dead_worker_is_restarted_and_none_outlives_the_main_process(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    srv = _start(server_factory)
    (first,) = _worker_pids(srv)
    os.kill(first, signal.SIGKILL)
    second = eventually(lambda: [p for p in _worker_pids(srv) if p != first], timeout=10)[0]
    assert "event=worker.exited index=1" in srv.log()
    with _main_paused(srv):
        m = imaplib.IMAP4(*srv.address("imap"), timeout=10)
        m.login(ALICE, PASSWORD)
        assert m.select("INBOX")[0] == "OK"
        m.logout()
    srv.kill()  # SIGKILL: no chance to stop the worker
    deadline = time.monotonic() + 10
    while _alive(second) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(second), "the worker outlived the main process"
    srv.start()  # and the ports are free again
    eventually(lambda: len(_worker_pids(srv)) == 3)


def test_the_worker_serves_smtp_with_a_journal_and_agent_of_its_own(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    srv = _start(server_factory)
    with _main_paused(srv):  # every connection now goes to the worker
        with smtplib.SMTP(*srv.address("smtp"), timeout=10) as c:
            for n in range(5):
                msg = f"Subject: w{n}\r\n\r\nhi\r\n"
                assert c.sendmail("x@remote.example", [ALICE], msg) == {}
        # The worker journals into intake.1 while the main process holds intake.
        assert (srv.data_dir / "intake.1" / "lock").exists()
        m = imaplib.IMAP4(*srv.address("imap"), timeout=10)
        m.login(ALICE, PASSWORD)

        def five() -> bool:
            m.select("INBOX")
            typ, data = m.uid("SEARCH", "ALL")
            return typ == "OK" and len(data[0].split()) == 5

        eventually(five)  # delivered by the worker's own agent while the main process sleeps
        m.logout()
    assert "event=agent.started" in srv.log()


def test_remote_mail_a_worker_accepts_goes_out_through_the_main_process(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    """The worker queues it (the main process is stopped meanwhile); once the main process
    runs again, its queue runner (woken by the worker's SIGUSR1) sends it to the smarthost."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "queue"))
    from fakesmtp import FakeSMTP
    from qhelpers import ThreadedSink

    with ThreadedSink(FakeSMTP()) as sink:
        srv = server_factory(
            f'[delivery]\nrelay_host = "127.0.0.1:{sink.port}"\nretry = ["1s"]\n',
            listeners=("submission", "imap", "pop3"),
            allow_plaintext_auth=True,
            workers=2,
        )
        srv.add_user(ALICE, PASSWORD)
        eventually(lambda: _worker_pids(srv))
        with _main_paused(srv):
            with smtplib.SMTP(*srv.address("submission"), timeout=10) as c:
                c.login(ALICE, PASSWORD)
                msg = f"From: {ALICE}\r\nSubject: out\r\n\r\nvia a worker\r\n"
                assert c.sendmail(ALICE, ["bob@remote.example"], msg) == {}
            time.sleep(0.5)
            assert not sink.sink.transactions  # only the main process sends
        eventually(lambda: sink.sink.transactions)
        sent = sink.sink.transactions[0]
        assert sent.rcpts == ["bob@remote.example"] and b"via a worker" in sent.data
        assert "event=queue.attempt" in srv.log() and "result=delivered" in srv.log()
        srv.stop()  # before the sink goes: the runner keeps its connection open for reuse


def test_connections_per_ip_hold_for_the_server_not_each_process(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    """connections_per_ip = 2: one connection held by the worker and one by the main process
    use up the allowance, so the main process refuses the third with its busy reply."""
    import socket

    srv = _start(server_factory, "[limits]\nconnections_per_ip = 2\n")
    worker = _worker_pids(srv)[-1]

    def connect() -> tuple[socket.socket, bytes]:
        s = socket.create_connection(srv.address("smtp"), timeout=10)
        return s, s.recv(512)

    with _main_paused(srv):
        held_by_worker, greeting = connect()
        assert greeting.startswith(b"220 ")
    os.kill(worker, signal.SIGSTOP)  # now every connection is the main process's
    try:
        held_by_main, greeting = connect()
        assert greeting.startswith(b"220 ")
        refused, reply = connect()
        assert reply.startswith(b"421 4.7.0"), reply
        refused.close()
        held_by_worker.close()
    finally:
        os.kill(worker, signal.SIGCONT)
    held_by_main.close()
    assert "event=connection.refused" in srv.log()

    # Once the worker saw its connection close, a new one is welcome again.
    def welcome() -> bool:
        s, greeting = connect()
        s.close()
        return greeting.startswith(b"220 ")

    assert eventually(welcome)


def test_auth_failures_count_across_the_processes(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    """[limits] auth_failures = 2: two wrong passwords given to the worker make the main
    process answer the next attempt only after the growing delay (1 s here)."""
    srv = _start(server_factory, "[limits]\nauth_failures = 2\n")
    worker = _worker_pids(srv)[-1]

    def wrong_login() -> float:
        m = imaplib.IMAP4(*srv.address("imap"), timeout=20)
        started = time.monotonic()
        try:
            m.login(ALICE, "not-the-password")
        except imaplib.IMAP4.error:
            pass
        else:
            raise AssertionError("a wrong password was taken")
        took = time.monotonic() - started
        m.logout()
        return took

    with _main_paused(srv):
        assert wrong_login() < 1.0
        assert wrong_login() < 1.0
    os.kill(worker, signal.SIGSTOP)  # the main process answers the third
    try:
        assert wrong_login() >= 0.9
    finally:
        os.kill(worker, signal.SIGCONT)


def test_the_connection_rate_counts_across_the_processes(
    server_factory: Callable[..., MerpatiServer],
) -> None:
    """[policy] connection_rate_per_ip = 2 (loopback not trusted here): once the worker has
    used up the allowance, the main process has none left this minute either."""
    import socket

    srv = _start(server_factory, "[policy]\nconnection_rate_per_ip = 2\ntrusted_networks = []\n")
    worker = _worker_pids(srv)[-1]

    def greeting() -> bytes:
        with socket.create_connection(srv.address("smtp"), timeout=10) as s:
            return s.recv(512)

    with _main_paused(srv):  # the worker takes them until the allowance is used up
        replies = [greeting() for _ in range(3)]  # (the harness's own port check may count)
        assert replies[0].startswith(b"220 ") and replies[-1].startswith(b"421 4.7.0")
    os.kill(worker, signal.SIGSTOP)
    try:
        assert greeting().startswith(b"421 4.7.0"), "the main process let a third one in"
    finally:
        os.kill(worker, signal.SIGCONT)
