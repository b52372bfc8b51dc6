"""The queue inside a real ``merpati serve``: it notices mail queued by another process,
resolves MX through a real DNS server on 127.0.0.1, delivers to a sink, obeys the
``merpati queue`` commands while running, and loses nothing to SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fakesmtp import FakeSMTP
from qhelpers import ThreadedSink, wait_sync

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnsserver import DNSServer
from merpati.delivery.api import Envelope, Recipient
from merpati.queue.store import QueueStore

ROOT = Path(__file__).resolve().parents[2]


def _toml(dns: DNSServer, port: int, **extra: str) -> str:
    delivery = {"port": str(port), "retry": '["1s"]', "connect_timeout": '"2s"'}
    delivery.update(extra)
    body = "\n".join(f"{k} = {v}" for k, v in delivery.items())
    return f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n\n[delivery]\n{body}\n'


def _message(n: int) -> bytes:
    return f"From: x@c.test\r\nX-Test-Id: {n}\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


def _ids(sink: FakeSMTP) -> set[int]:
    out = set()
    for t in list(sink.transactions):
        for line in t.data.split(b"\r\n"):
            if line.startswith(b"X-Test-Id: "):
                out.add(int(line[11:]))
    return out


@pytest.fixture
def dns() -> Any:
    with DNSServer(
        {
            ("b.test", "MX"): ["10 mx.b.test."],
            ("c.test", "MX"): ["10 mx.b.test."],
            ("mx.b.test", "A"): ["127.0.0.1"],
        }
    ) as server:
        yield server


def test_running_server_delivers_and_obeys_queue_commands(
    server_factory: Any, dns: DNSServer
) -> None:
    refuse = {"on": True}

    def rcpt(addr: str) -> bytes:
        if addr.startswith("later") and refuse["on"]:
            return b"451 4.2.1 try later\r\n"
        return b"250 ok\r\n"

    with ThreadedSink(FakeSMTP(rcpt_reply=rcpt)) as ts:
        srv = server_factory(_toml(dns, ts.port, retry='["1h"]'), listeners=("http",))
        store = QueueStore.open(srv.data_dir)
        env = Envelope("x@c.test", ())
        now_id = store.enqueue_sync(env, _message(1), (Recipient("bob@b.test"),))
        wait_sync(lambda: 1 in _ids(ts.sink), what="delivery of a message queued elsewhere")
        wait_sync(lambda: store.get(now_id) is None, what="removal after delivery")
        assert "queue.attempt" in srv.log() and "mx=mx.b.test" in srv.log()
        host, port = srv.address("http")
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'merpati_queue_attempts_total{result="delivered"} 1.0' in metrics
        assert "merpati_queue_messages 0.0" in metrics

        later = store.enqueue_sync(env, _message(2), (Recipient("later@b.test"),))
        wait_sync(lambda: (store.get(later) or _never()).attempts == 1, what="first attempt")
        listing = json.loads(srv.cli("queue", "list", "--json").stdout)
        (m,) = listing
        assert m["id"] == later and m["sender"] == "x@c.test" and m["attempts"] == 1
        assert m["recipients"][0]["state"] == "deferred"
        assert "451" in m["last_reply"] and m["size"] == len(_message(2))
        text = srv.cli("queue", "list").stdout
        assert later in text and "later@b.test" in text and "451" in text

        refuse["on"] = False
        assert "1 message" in srv.cli("queue", "flush").stdout
        wait_sync(lambda: 2 in _ids(ts.sink), what="delivery after flush")
        wait_sync(lambda: store.count() == 0, what="empty queue")
        assert srv.cli("queue", "list").stdout.strip() == "queue is empty"

        refuse["on"] = True
        third = store.enqueue_sync(env, _message(3), (Recipient("later@b.test"),))
        wait_sync(lambda: (store.get(third) or _never()).attempts == 1, what="attempt")
        assert third in srv.cli("queue", "retry", third).stdout
        wait_sync(lambda: (store.get(third) or _never()).attempts == 2, what="retry")
        srv.cli("queue", "bounce", third)
        # x@c.test is remote here, so the DSN is queued and sent to c.test's MX (the sink).
        wait_sync(
            lambda: any(
                t.mail_from == "" and t.rcpts == ["x@c.test"] for t in ts.sink.transactions
            ),
            what="DSN to the sender",
        )
        fourth = store.enqueue_sync(env, _message(4), (Recipient("later@b.test"),))
        srv.cli("queue", "remove", fourth)
        assert store.get(fourth) is None
        bad = srv.cli("queue", "retry", "nonexistent", check=False)
        assert bad.returncode == 1 and "no message nonexistent" in bad.stderr
        assert srv.stop() == 0


def _never() -> Any:
    raise AssertionError("message vanished")


def test_sigkill_loses_nothing(server_factory: Any, dns: DNSServer, tmp_path: Path) -> None:
    """Enqueue from a process that is SIGKILLed mid-stream, then SIGKILL the server while it
    delivers: every acknowledged message is delivered at least once after a restart."""
    data_dir = tmp_path / "shared"
    code = (
        "import sys, pathlib\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from merpati.queue.store import QueueStore\n"
        "from merpati.delivery.api import Envelope, Recipient\n"
        f"s = QueueStore.open(pathlib.Path({str(data_dir)!r}))\n"
        "for n in range(100000):\n"
        "    body = f'From: x@c.test\\r\\nX-Test-Id: {n}\\r\\n\\r\\nb\\r\\n'.encode()\n"
        "    s.enqueue_sync(Envelope('x@c.test', ()), body, (Recipient(f'u{n}@b.test'),))\n"
        "    print(n, flush=True)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    assert writer.stdout is not None
    for line in writer.stdout:
        acked.append(int(line))
        if len(acked) >= 40:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    acked.extend(int(x) for x in writer.stdout.read().split())
    with ThreadedSink(FakeSMTP(stall_after_data=0.02)) as ts:
        extra = _toml(dns, ts.port, concurrency_per_domain="2")
        srv = server_factory(extra, listeners=("http",), start=False)
        srv.config_path.write_text(
            srv.config_path.read_text().replace(str(srv.data_dir), str(data_dir))
        )
        srv.data_dir = data_dir
        srv.start()
        wait_sync(lambda: len(ts.sink.transactions) >= 5, what="first deliveries")
        srv.kill()
        delivered_before = len(_ids(ts.sink))
        assert delivered_before < len(acked)  # the kill hit mid-way
        srv.start()
        wait_sync(lambda: set(acked) <= _ids(ts.sink), timeout=40, what="every message")
        wait_sync(lambda: QueueStore.open(data_dir).count() == 0, what="empty queue")
        assert srv.stop() == 0
    # duplicates are allowed (at least once), losses are not
    assert set(acked) <= _ids(ts.sink)


def test_sigkill_of_a_server_taking_and_sending_mail(server_factory: Any, dns: DNSServer) -> None:
    """Mail submitted over SMTP: every message the server said 250 to reaches the remote
    side after the server is SIGKILLed mid-stream and started again."""
    import smtplib
    import threading

    with ThreadedSink(FakeSMTP(stall_after_data=0.02)) as ts:
        srv = server_factory(
            _toml(dns, ts.port), listeners=("submission", "http"), allow_plaintext_auth=True
        )
        srv.add_user("alice@a.test", "secret-password-1")
        acked: list[int] = []
        killed = threading.Event()

        def killer() -> None:
            wait_sync(lambda: len(acked) >= 15, what="15 accepted messages")
            srv.kill()
            killed.set()

        t = threading.Thread(target=killer)
        t.start()
        host, port = srv.address("submission")
        try:
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.login("alice@a.test", "secret-password-1")
                for n in range(1000):
                    client.sendmail("alice@a.test", [f"u{n}@b.test"], _message(n))
                    acked.append(n)
        except (smtplib.SMTPException, OSError):
            pass
        t.join(30)
        assert killed.is_set() and len(acked) >= 15
        srv.start()
        wait_sync(lambda: set(acked) <= _ids(ts.sink), timeout=40, what="every accepted message")
        assert srv.stop() == 0


def test_submitted_remote_mail_is_sent_at_once(server_factory: Any) -> None:
    """The delivery agent queues a remote recipient and its answer wakes the queue runner: the
    message is on its way in well under the runner's own once-a-second look."""
    import smtplib
    import time

    from harness import eventually

    with ThreadedSink(FakeSMTP()) as ts:
        srv = server_factory(
            f'[delivery]\nrelay_host = "127.0.0.1:{ts.port}"\nretry = ["1s"]\n',
            listeners=("submission",),
            allow_plaintext_auth=True,
        )
        srv.add_user("a@c.test", "sender-pw-123")
        waits = []
        with smtplib.SMTP(*srv.address("submission"), timeout=10) as c:
            c.login("a@c.test", "sender-pw-123")
            for n in range(3):
                started = time.monotonic()
                c.sendmail("a@c.test", ["bob@b.test"], _message(n))
                eventually(lambda n=n: n in _ids(ts.sink), interval=0.01)
                waits.append(time.monotonic() - started)
        assert min(waits) < 0.5, waits
        srv.stop()  # before the sink goes: the runner keeps its connection for reuse
