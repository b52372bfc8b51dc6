"""A real ``merpati serve`` subprocess driven by real clients: smtplib and swaks on all three
SMTP listeners, graceful shutdown, and the crash test (SIGKILL mid-stream, nothing lost)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import MerpatiServer, eventually

SMTP_LISTENERS = ("smtp", "submission", "submissions")
ALICE = "alice@example.org"
PASSWORD = "alice-pw-123"


@pytest.fixture
def mta(server_factory) -> MerpatiServer:  # type: ignore[no-untyped-def]
    srv: MerpatiServer = server_factory(listeners=SMTP_LISTENERS)
    srv.add_user(ALICE, PASSWORD)
    return srv


def test_smtplib_on_all_three_listeners(mta: MerpatiServer) -> None:
    ctx = mta.client_tls_context()
    body = "Subject: caf\u00e9\r\n\r\n8-bit \u00e9t\u00e9\r\n".encode()
    with smtplib.SMTP(mta.host, mta.ports["smtp"], timeout=10) as c:
        c.starttls(context=ctx)
        assert c.sendmail("x@remote.example", [ALICE], body, ["BODY=8BITMIME"]) == {}
    with smtplib.SMTP(mta.host, mta.ports["submission"], timeout=10) as c:
        c.starttls(context=ctx)
        c.login(ALICE, PASSWORD)
        assert c.sendmail(ALICE, [ALICE], body, ["BODY=8BITMIME"]) == {}
    with smtplib.SMTP_SSL(mta.host, mta.ports["submissions"], context=ctx, timeout=10) as c:
        c.login(ALICE, PASSWORD)
        assert c.sendmail(ALICE, [ALICE], body, ["SMTPUTF8", "BODY=8BITMIME"]) == {}
    log = mta.log()
    assert log.count("event=smtp.message") == 3 and log.count("result=250") == 3


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("swaks") is None:
        pytest.skip("swaks not installed (Debian package swaks; make test installs it as root)")
    return subprocess.run(
        ["swaks", "--silent", "1", "--timeout", "20", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _swaks_tls_missing(proc: subprocess.CompletedProcess[str]) -> bool:
    return "Net::SSLeay" in proc.stdout + proc.stderr or "IO::Socket::SSL" in proc.stderr


@pytest.mark.interop
def test_swaks_on_all_three_listeners(mta: MerpatiServer) -> None:
    common = ["--to", ALICE, "--server", mta.host, "--h-Subject", "swaks"]
    plain = swaks(*common, "--from", "x@remote.example", "--port", str(mta.ports["smtp"]))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    tls_runs = [
        ("--port", str(mta.ports["smtp"]), "--tls", "--from", "x@remote.example"),
        ("--port", str(mta.ports["submission"]), "--tls", "--auth", "PLAIN"),
        ("--port", str(mta.ports["submission"]), "--tls", "--auth", "LOGIN"),
        ("--port", str(mta.ports["submissions"]), "--tlsc", "--auth", "PLAIN"),
    ]
    auth = ["--auth-user", ALICE, "--auth-password", PASSWORD, "--from", ALICE]
    for run in tls_runs:
        extra = auth if "--auth" in run else []
        proc = swaks(*common, *run, *extra)
        if _swaks_tls_missing(proc):
            pytest.skip("swaks lacks TLS support (Debian libnet-ssleay-perl/libio-socket-ssl-perl)")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # No AUTH before TLS on submission: swaks is refused.
    proc = swaks(*common, *auth, "--port", str(mta.ports["submission"]), "--auth", "PLAIN")
    assert proc.returncode != 0
    assert mta.log().count("event=smtp.message") == 5


def test_shutdown_tells_idle_clients_421(mta: MerpatiServer) -> None:
    c = smtplib.SMTP(mta.host, mta.ports["smtp"], timeout=10)
    c.ehlo("idle")
    assert mta.proc is not None
    mta.proc.terminate()
    code, text = c.getreply()
    assert (code, text) == (421, b"4.3.2 Server shutting down, try later")
    assert mta.proc.wait(10) == 0


def _durable_store_available() -> bool:
    from merpati.config import Config
    from merpati.mailstore import open_mailstore
    from merpati.mailstore.memory import MemoryMailStore

    store = open_mailstore(Config(), lambda _a: None)
    return not isinstance(store, MemoryMailStore)


def _read_inbox(srv: MerpatiServer, account: str) -> list[bytes]:
    from merpati.accounts.store import AccountStore
    from merpati.config import load_config
    from merpati.mailstore import open_mailstore

    config = load_config(srv.config_path)

    async def read() -> list[bytes]:
        accounts = AccountStore.open(config.data_dir)
        store = open_mailstore(config, accounts.quota)
        try:
            box = store.mailbox(account)
            return [await box.read("INBOX", m.uid) for m in await box.messages("INBOX")]
        finally:
            await store.close()
            accounts.close()

    return asyncio.run(read())


def _message(n: int) -> bytes:
    body = (f"line {n} ".encode() * 12 + b"\r\n") * 100  # ~10 KB
    digest = hashlib.sha256(body).hexdigest()
    return f"Subject: crash-{n}\r\nX-Digest: {digest}\r\n\r\n".encode() + body


def _streams(
    mta: MerpatiServer, count: int, acked: list[int], attempted: list[int], stop: threading.Event
) -> list[threading.Thread]:
    """``count`` SMTP sessions sending numbered messages until ``stop`` (or an error)."""

    def stream(first: int) -> None:
        n = first
        try:
            with smtplib.SMTP(mta.host, mta.ports["smtp"], timeout=20) as c:
                while not stop.is_set():
                    attempted.append(n)
                    c.sendmail("x@remote.example", [ALICE], _message(n))
                    acked.append(n)
                    n += 1
        except (smtplib.SMTPException, OSError):
            return

    threads = [threading.Thread(target=stream, args=(i * 100_000,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads


def _wait_for(acked: list[int], count: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while len(acked) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_acknowledged(mta: MerpatiServer) -> None:
    if not _durable_store_available():
        pytest.skip("the durable (embedded Maildir) mail store is not on this branch yet")
    acked: list[int] = []
    attempted: list[int] = []
    stop = threading.Event()
    threads = _streams(mta, 4, acked, attempted, stop)
    _wait_for(acked, 40)
    mta.kill()  # SIGKILL while the streams are mid-transaction
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 10, "too few messages were accepted before the kill"
    mta.start()  # recovery on restart
    mta.stop()
    stored = _read_inbox(mta, ALICE)
    seen: set[int] = set()
    for data in stored:
        head, _, _body = data.partition(b"\r\n\r\n")
        subject = [h for h in head.split(b"\r\n") if h.startswith(b"Subject: crash-")]
        assert len(subject) == 1, "a stored message lost its headers"
        n = int(subject[0].split(b"-")[1])
        expected = _message(n)
        assert data.endswith(expected), f"message {n} is incomplete"  # never half-visible
        assert n not in seen, f"message {n} stored twice"
        seen.add(n)
    print(f"crash test: acked={len(acked)} stored={len(seen)} attempted={len(attempted)}")
    missing = set(acked) - seen
    assert not missing, f"acknowledged but lost: {sorted(missing)}"
    assert seen <= set(attempted)
    # At most one message per stream can be stored without its 250 having arrived.
    assert len(seen - set(acked)) <= len(threads)


def _agent_pid(mta: MerpatiServer) -> int:
    started = [line for line in mta.log().splitlines() if "event=agent.started" in line]
    assert started, "no delivery agent started"
    return int(started[-1].split("pid=")[1].split()[0])


@pytest.mark.slow
def test_sigkill_of_the_delivery_agent_loses_and_doubles_nothing(mta: MerpatiServer) -> None:
    """The agent dies mid-delivery: SMTP goes on answering, the server starts another agent
    and hands it every group not yet answered; each message lands exactly once."""
    acked: list[int] = []
    stop = threading.Event()
    first_agent = eventually(lambda: _agent_pid(mta))
    threads = _streams(mta, 3, acked, [], stop)
    _wait_for(acked, 30)
    os.kill(first_agent, signal.SIGKILL)
    _wait_for(acked, 60)  # accepted while no agent runs
    stop.set()
    for t in threads:
        t.join(15)
    assert eventually(lambda: _agent_pid(mta) != first_agent)  # a new one took over
    want = set(acked)
    eventually(lambda: len(mta.log().split("event=agent.exited")) == 2, timeout=5)

    def all_stored() -> bool:
        return len(_stored_numbers(mta)) >= len(want)

    eventually(all_stored, timeout=30)
    mta.stop()
    numbers = _stored_numbers(mta)
    assert sorted(numbers) == sorted(set(numbers)), "a message was stored twice"
    assert want <= set(numbers), f"acknowledged but lost: {sorted(want - set(numbers))}"


@pytest.mark.slow
def test_a_hung_delivery_agent_is_killed_and_replaced(server_factory) -> None:  # type: ignore[no-untyped-def]
    """A stopped agent (SIGSTOP: alive, answering nothing) is killed after
    ``[limits] delivery_stall`` and a new one delivers what it was holding, once."""
    mta: MerpatiServer = server_factory(
        listeners=SMTP_LISTENERS, extra_toml='[limits]\ndelivery_stall = "1s"\n'
    )
    mta.add_user(ALICE, PASSWORD)
    hung = eventually(lambda: _agent_pid(mta))
    with smtplib.SMTP(mta.host, mta.ports["smtp"], timeout=10) as c:
        c.sendmail("x@remote.example", [ALICE], _message(1))
    eventually(lambda: _stored_numbers(mta) == [1], timeout=10)
    os.kill(hung, signal.SIGSTOP)
    try:
        with smtplib.SMTP(mta.host, mta.ports["smtp"], timeout=10) as c:
            for n in (2, 3, 4):  # journaled, so accepted while the agent hangs
                assert c.sendmail("x@remote.example", [ALICE], _message(n)) == {}
        eventually(lambda: "event=agent.stalled" in mta.log(), timeout=15)
        assert eventually(lambda: _agent_pid(mta) != hung, timeout=10)
        eventually(lambda: len(_stored_numbers(mta)) >= 4, timeout=15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    mta.stop()
    assert sorted(_stored_numbers(mta)) == [1, 2, 3, 4]
    assert "event=agent.stalled" in mta.log()


def _stored_numbers(mta: MerpatiServer) -> list[int]:
    out = []
    for data in _read_inbox(mta, ALICE):
        head = data.partition(b"\r\n\r\n")[0]
        subject = [h for h in head.split(b"\r\n") if h.startswith(b"Subject: crash-")]
        n = int(subject[0].split(b"-")[1])
        assert data.endswith(_message(n)), f"message {n} is incomplete"
        out.append(n)
    return out
