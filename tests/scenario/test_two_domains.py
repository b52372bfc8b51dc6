"""The two-domain scenario, nothing mocked: two ``merpati serve`` processes, a.test on
127.0.0.2 and b.test on 127.0.0.3, and an authoritative DNS server on 127.0.0.1 serving MX, A
and TXT for both zones (the SPF, DKIM and DMARC records ``merpati dns`` says to publish, so
each side's inbound checks pass on the other's mail). Real clients: smtplib (submission with STARTTLS + AUTH), poplib or
imaplib to read mailboxes.

alice@a.test writes to bob@b.test; A resolves b.test's MX and delivers to B; bob reads it
with alice's headers intact and replies; a message to nobody@b.test comes back to alice as a
DSN; with b.test's first MX down, A uses the second; with all of b.test down, A defers and
delivers once B is back. Each server uses ``[delivery] port`` (the other's SMTP port), so no
root is needed; a short retry schedule keeps it quick.
"""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import socket
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnsserver import DNSServer
from harness import MerpatiServer
from mailread import imap_messages, pop3_messages
from merpati.server import registry

A_IP, B_IP, DEAD_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
PASSWORD = "correct horse battery"


def _available(listener: str) -> bool:
    try:
        return registry.resolve(registry.LISTENER_FACTORIES[listener]) is not None
    except Exception:
        return False


def _available_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _readers() -> tuple[str, ...]:
    return tuple(name for name in ("pop3", "imap") if _available(name))


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s")
        time.sleep(0.2)


class Domain:
    """One mail domain: its server and what the test needs to talk to it."""

    def __init__(self, server: MerpatiServer, domain: str) -> None:
        self.server = server
        self.domain = domain

    def submit(self, sender: str, to: str, subject: str, body: str, **headers: str) -> str:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{subject.replace(' ', '-')}.{time.time_ns()}@{self.domain}>"
        for k, v in headers.items():
            msg[k.replace("_", "-")] = v
        msg.set_content(body)
        host, port = self.server.address("submission")
        with smtplib.SMTP(host, port, timeout=20) as s:
            s.starttls(context=MerpatiServer.client_tls_context())
            s.login(sender, PASSWORD)
            s.send_message(msg)
        return str(msg["Message-ID"])

    def mailbox(self, address: str, via: str = "") -> list[email.message.Message]:
        """Every message in the account's INBOX, read over POP3 (else IMAP) with STLS/STARTTLS;
        ``via`` picks the protocol."""
        via = via or _readers()[0]
        read = pop3_messages if via == "pop3" else imap_messages
        raws = read(self.server, address, PASSWORD)
        return [email.message_from_bytes(r, policy=email.policy.compat32) for r in raws]

    def find(self, address: str, message_id: str) -> email.message.Message | None:
        for m in self.mailbox(address):
            if m["Message-ID"] == message_id:
                return m
        return None


def _publish_txt(dns: DNSServer, server: MerpatiServer, domain: str) -> None:
    """Serve the TXT records ``merpati dns DOMAIN`` says to publish (SPF, DKIM, DMARC...)."""
    records = json.loads(server.cli("dns", domain, "--json").stdout)["records"]
    by_name: dict[str, list[str]] = {}
    for r in records:
        if r["type"] == "TXT":
            raw = r["value"]
            chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)]  # rfc1035 strings
            by_name.setdefault(r["name"], []).append(" ".join(f'"{c}"' for c in chunks))
    for name, values in by_name.items():
        dns.set(name, "TXT", values)


@pytest.fixture
def domains(tmp_path: Path) -> Iterator[tuple[Domain, Domain, DNSServer]]:
    if not all(_available(n) for n in ("smtp", "submission")):
        pytest.skip("the SMTP server (merpati.smtp.server) is not on this branch yet")
    if not _readers():
        pytest.skip("neither POP3 nor IMAP (merpati.pop3/merpati.imap) is on this branch yet")
    for ip in (A_IP, B_IP):
        try:
            with socket.socket() as probe:
                probe.bind((ip, 0))
        except OSError:
            pytest.skip(f"cannot bind the loopback address {ip} on this system")
    records = {
        ("a.test", "MX"): ["10 mx.a.test."],
        ("mx.a.test", "A"): [A_IP],
        ("a.test", "TXT"): ['"v=spf1 ip4:127.0.0.2 -all"'],
        ("b.test", "MX"): ["10 mx1.b.test.", "20 mx2.b.test."],
        ("mx1.b.test", "A"): [B_IP],
        ("mx2.b.test", "A"): [B_IP],
        ("b.test", "TXT"): ['"v=spf1 ip4:127.0.0.3 -all"'],
    }
    dns = DNSServer(records, ttl=1).start()
    listeners = ("smtp", "submission", *_readers(), "http")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = MerpatiServer(tmp_path / "a", host=A_IP, hostname="mx.a.test", listeners=listeners)
    b = MerpatiServer(tmp_path / "b", host=B_IP, hostname="mx2.b.test", listeners=listeners)
    for srv, other, ip in ((a, b, A_IP), (b, a, B_IP)):
        srv.config_path.write_text(
            srv.config_path.read_text()
            + f'\n[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
            + f"\n[delivery]\nport = {other.ports['smtp']}\n"
            + f'source_address = "{ip}"\nretry = ["1s"]\nconnect_timeout = "2s"\n'
            # only the test's own clients (127.0.0.1) skip the inbound checks, not the peer
            + '\n[policy]\ntrusted_networks = ["127.0.0.1/32", "::1/128"]\n'
        )
    try:
        a.start()
        b.start()
        a.add_user("alice@a.test", PASSWORD)
        b.add_user("bob@b.test", PASSWORD)
        for srv, domain in ((a, "a.test"), (b, "b.test")):
            _publish_txt(dns, srv, domain)
        yield Domain(a, "a.test"), Domain(b, "b.test"), dns
    finally:
        a.stop()
        b.stop()
        dns.stop()


def test_two_domains(domains: tuple[Domain, Domain, DNSServer]) -> None:
    a, b, dns = domains

    # alice -> bob: A resolves b.test's MX and delivers to B; bob reads it intact.
    mid = a.submit("alice@a.test", "bob@b.test", "hello bob", "Hi Bob,\nlunch?\n")
    got = _wait(lambda: b.find("bob@b.test", mid), 30, "bob receives alice's message")
    assert got["From"] == "alice@a.test" and got["Subject"] == "hello bob"
    assert "lunch?" in got.get_payload()
    assert got["Received"]  # B's trace header
    if _available_module("merpati.trust.hooks"):  # signed by A on the way out (queue hook)
        assert "d=a.test" in str(got["DKIM-Signature"])
        results = str(got["Authentication-Results"])  # B checked it against our DNS
        assert "spf=pass" in results and "dkim=pass" in results and "dmarc=pass" in results
    if "pop3" in _readers() and "imap" in _readers():  # the same message over IMAP too
        fetched = [m for m in b.mailbox("bob@b.test", via="imap") if m["Message-ID"] == mid]
        assert len(fetched) == 1 and fetched[0]["Subject"] == "hello bob"
    log = a.server.log()
    assert "queue.attempt" in log and "mx=mx1.b.test" in log and "result=delivered" in log
    assert f"ip={B_IP}" in log
    # sent from [delivery] source_address (B logs the session when A's idle connection closes)
    _wait(lambda: f"listener=smtp peer={A_IP}" in b.server.log(), 10, "B sees A's address")

    # bob replies; it comes back the same way.
    rid = b.submit("bob@b.test", "alice@a.test", "Re: hello bob", "Yes!\n", In_Reply_To=mid)
    reply = _wait(lambda: a.find("alice@a.test", rid), 30, "alice receives bob's reply")
    assert reply["In-Reply-To"] == mid and reply["From"] == "bob@b.test"

    # nobody@b.test: B refuses the recipient, A bounces it into alice's INBOX as a DSN.
    a.submit("alice@a.test", "nobody@b.test", "to nobody", "Anyone?\n")

    def dsn() -> email.message.Message | None:
        for m in a.mailbox("alice@a.test"):
            if m.get_content_type() == "multipart/report":
                return m
        return None

    report = _wait(dsn, 30, "the DSN reaches alice")
    status = report.get_payload()[1]  # type: ignore[index]
    assert status.get_content_type() == "message/delivery-status"
    text = status.as_string()
    assert "Final-Recipient: rfc822; nobody@b.test" in text
    assert "Action: failed" in text and "Status: 5." in text
    assert "Remote-MTA: dns; mx1.b.test" in text and "Diagnostic-Code: smtp; 5" in text

    # b.test's first MX is down: A falls back to the second.
    dns.set("mx1.b.test", "A", [DEAD_IP])
    time.sleep(2.5)  # the 1 s TTL runs out, and A's idle connection to mx1 (2 s) is closed
    mid2 = a.submit("alice@a.test", "bob@b.test", "via mx2", "second MX\n")
    _wait(lambda: b.find("bob@b.test", mid2), 30, "delivery through the second MX")
    assert "mx=mx2.b.test" in a.server.log()

    # All of b.test is down: A defers, then delivers once B is back.
    b.server.stop()
    mid3 = a.submit("alice@a.test", "bob@b.test", "while down", "are you there?\n")
    _wait(lambda: "result=deferred" in a.server.log(), 30, "A defers while B is down")
    listing = a.server.cli("queue", "list").stdout
    assert "bob@b.test" in listing and "deferred" in listing
    b.server.start()
    _wait(lambda: b.find("bob@b.test", mid3), 40, "delivery after B is back")
    _wait(lambda: "queue is empty" in a.server.cli("queue", "list").stdout, 20, "A's queue drains")
