"""The trust controls inside the real SMTP server (in process, real loopback sockets, real
smtplib clients), with the test DNS server answering for the sender domains."""

from __future__ import annotations

import dataclasses
import re
import smtplib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from merpati.app import App
from merpati.config import DNSConfig, PolicyConfig
from merpati.trust import dkim_keys
from merpati.trust.hooks import make_signer
from merpati.trust.srs import Srs, load_secret

from .dnsserver import DnsServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "smtp"))
from smtp_inproc import InProcServer

ALICE = "alice@ours.test"


class TrustServer(InProcServer):
    """InProcServer with our DNS server and policy settings."""

    def __init__(self, data_dir: Path, dns_port: int, policy: PolicyConfig, **kw: Any) -> None:
        self._dns = DNSConfig(nameservers=(("127.0.0.1", dns_port),), timeout=1.0)
        self._policy = policy
        super().__init__(data_dir, hostname="mx.ours.test", **kw)

    async def _start(self) -> App:
        self.config = dataclasses.replace(self.config, dns=self._dns, policy=self._policy)
        return await super()._start()

    def folder(self, account: str, name: str) -> list[bytes]:
        async def read() -> list[bytes]:
            box = self.app.mailstore.mailbox(account)
            return [await box.read(name, m.uid) for m in await box.messages(name)]

        return self.call(read())


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    s = dns_server
    for name, policy in (("rej", "reject"), ("quar", "quarantine"), ("mon", "none")):
        s.add_txt(f"{name}.test", "v=spf1 ip4:192.0.2.1 -all")  # never the loopback client
        s.add_txt(f"_dmarc.{name}.test", f"v=DMARC1; p={policy}")
    s.add_txt("good.test", "v=spf1 ip4:127.0.0.1 -all")
    s.add_txt("_dmarc.good.test", "v=DMARC1; p=reject")
    return s


def make_server(tmp_path: Path, zone: DnsServer, **policy: Any) -> TrustServer:
    policy.setdefault("trusted_networks", ())  # the loopback client is checked like any other
    srv = TrustServer(tmp_path / "data", zone.port, PolicyConfig(**policy), plaintext_auth=True)
    srv.add_user(ALICE, "alice-pw-1")
    return srv


@pytest.fixture
def srv(tmp_path: Path, zone: DnsServer) -> Iterator[TrustServer]:
    server = make_server(tmp_path, zone)
    yield server
    server.stop()


def send(srv: TrustServer, sender: str, body: bytes, rcpt: str = ALICE) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        assert c.sendmail(sender, [rcpt], body) == {}


def unfold(data: bytes) -> bytes:
    return re.sub(rb"\r\n[ \t]", b" ", data)


def msg(from_addr: str, extra: bytes = b"") -> bytes:
    return extra + f"From: <{from_addr}>\r\nSubject: s\r\n\r\nbody\r\n".encode()


def test_dmarc_reject_is_550_at_end_of_data(srv: TrustServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        with pytest.raises(smtplib.SMTPDataError) as info:
            c.sendmail("a@rej.test", [ALICE], msg("a@rej.test"))
    assert info.value.smtp_code == 550
    assert info.value.smtp_error.startswith(b"5.7.1 ")
    assert b"rej.test" in info.value.smtp_error
    assert srv.folder(ALICE, "INBOX") == [] and srv.folder(ALICE, "Junk") == []


def test_dmarc_quarantine_files_into_junk(srv: TrustServer) -> None:
    send(srv, "a@quar.test", msg("a@quar.test"))
    assert srv.folder(ALICE, "INBOX") == []
    (junk,) = (unfold(m) for m in srv.folder(ALICE, "Junk"))
    assert b"Authentication-Results: mx.ours.test; spf=fail" in junk
    assert b"dmarc=fail (p=quarantine pct=100 dis=quarantine) header.from=quar.test" in junk


def test_pass_and_none_go_to_inbox_with_results_and_forgeries_stripped(srv: TrustServer) -> None:
    forged = b"Authentication-Results: mx.ours.test; dmarc=pass header.from=mon.test\r\n"
    send(srv, "a@mon.test", msg("a@mon.test", extra=forged))
    send(srv, "a@good.test", msg("a@good.test"))
    first, second = srv.folder(ALICE, "INBOX")
    head = unfold(first.split(b"\r\n\r\n")[0])
    assert head.count(b"Authentication-Results:") == 1
    assert b"dmarc=fail (p=none pct=100 dis=none) header.from=mon.test" in head
    assert b"spf=pass" in second and b"dmarc=pass" in second
    assert srv.folder(ALICE, "Junk") == []


def test_submission_is_not_checked(srv: TrustServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["submission"], timeout=10) as c:
        c.ehlo("client.example")
        c.login(ALICE, "alice-pw-1")
        assert c.sendmail(ALICE, [ALICE], msg(ALICE)) == {}
    (m,) = srv.folder(ALICE, "INBOX")
    assert b"Authentication-Results" not in m


def test_dmarc_reject_off_files_into_junk(tmp_path: Path, zone: DnsServer) -> None:
    srv = make_server(tmp_path, zone, dmarc_reject=False)
    try:
        send(srv, "a@rej.test", msg("a@rej.test"))
        assert len(srv.folder(ALICE, "Junk")) == 1
    finally:
        srv.stop()


def test_greylisting(tmp_path: Path, zone: DnsServer) -> None:
    srv = make_server(tmp_path, zone, greylisting=True, greylist_delay=0.0)
    try:
        with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
            c.ehlo("client.example")
            c.mail("a@good.test")
            code, text = c.rcpt(ALICE)
            assert (code, text[:6]) == (451, b"4.7.1 ")
            c.rset()
            c.mail("a@good.test")
            assert c.rcpt(ALICE)[0] == 250  # the retry passes
        # Authenticated sessions are never greylisted.
        with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
            c.ehlo("client.example")
            c.login(ALICE, "alice-pw-1")
            c.mail(ALICE)
            assert c.rcpt("bob-new@ours.test")[0] != 451
    finally:
        srv.stop()


def test_connection_rate_per_ip(tmp_path: Path, zone: DnsServer) -> None:
    srv = make_server(tmp_path, zone, connection_rate_per_ip=2)
    try:
        for _ in range(2):
            with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
                assert c.noop()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as info:
            smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10)
        assert info.value.smtp_code == 421
    finally:
        srv.stop()


def test_outbound_rate_per_account(tmp_path: Path, zone: DnsServer) -> None:
    srv = make_server(tmp_path, zone, outbound_rate_per_account=2)
    try:
        with smtplib.SMTP(srv.host, srv.ports["submission"], timeout=10) as c:
            c.ehlo("client.example")
            c.login(ALICE, "alice-pw-1")
            for _ in range(2):
                assert c.sendmail(ALICE, ["x@remote.test"], msg(ALICE)) == {}
            with pytest.raises(smtplib.SMTPSenderRefused) as info:
                c.sendmail(ALICE, ["x@remote.test"], msg(ALICE))
        assert info.value.smtp_code == 450
        assert srv.queue is not None and len(srv.queue.items) == 2
    finally:
        srv.stop()


def test_alias_forwarding_gets_srs_and_arc(srv: TrustServer) -> None:
    dkim_keys.create_keys(srv.config.data_dir, "ours.test")
    srv.app.accounts.add_alias("fwd@ours.test", ["someone@elsewhere.test"])
    send(srv, "a@good.test", msg("a@good.test"), rcpt="fwd@ours.test")
    assert srv.queue is not None
    ((envelope, message, rcpts),) = srv.queue.items
    assert [r.address for r in rcpts] == ["someone@elsewhere.test"]
    assert envelope.mail_from.startswith("SRS0=") and envelope.mail_from.endswith("@ours.test")
    srs = Srs(load_secret(srv.config))
    assert srs.reverse(envelope.mail_from) == "a@good.test"
    assert message.startswith(b"ARC-Seal: i=1;") or b"\r\nARC-Seal: i=1;" in message
    assert b"ARC-Authentication-Results: i=1; mx.ours.test" in message


def test_bounce_to_srs_address_goes_back(srv: TrustServer) -> None:
    srs_addr = Srs(load_secret(srv.config)).forward("orig@good.test", "ours.test")
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        c.mail("")
        assert c.rcpt(srs_addr)[0] == 250
        assert c.rcpt("SRS0=XXXX=AA=good.test=orig@ours.test")[0] == 550  # forged hash
        code, _ = c.data(b"Subject: bounce\r\n\r\nundeliverable\r\n")
        assert code == 250
    assert srv.queue is not None
    ((envelope, _, rcpts),) = srv.queue.items
    assert envelope.mail_from == "" and [r.address for r in rcpts] == ["orig@good.test"]


def test_signer_for_the_queue(srv: TrustServer) -> None:
    dkim_keys.create_keys(srv.config.data_dir, "ours.test")
    signer = make_signer(srv.app)
    signed = signer(msg(ALICE), "ours.test")
    assert signed.count(b"DKIM-Signature:") == 2 and b"d=ours.test" in signed
    assert signer(msg("x@elsewhere.test"), "elsewhere.test") == msg("x@elsewhere.test")
    # A DSN (null sender) from our hostname's domain is signed when that domain has keys.
    assert b"d=ours.test" in signer(msg("mailer-daemon@ours.test"), "")


def test_trusted_network_skips_checks_but_not_stripping(tmp_path: Path, zone: DnsServer) -> None:
    srv = make_server(tmp_path, zone, trusted_networks=("127.0.0.0/8",), connection_rate_per_ip=1)
    try:
        forged = b"Authentication-Results: mx.ours.test; dmarc=pass header.from=rej.test\r\n"
        send(srv, "a@rej.test", msg("a@rej.test", extra=forged))  # not refused: trusted
        send(srv, "a@rej.test", msg("a@rej.test"))  # nor rate limited
        first, _ = srv.folder(ALICE, "INBOX")
        assert b"Authentication-Results" not in first
    finally:
        srv.stop()


def test_trust_service_installs_and_removes_the_signer(srv: TrustServer) -> None:
    from merpati.queue import signing
    from merpati.trust.hooks import start_trust

    dkim_keys.create_keys(srv.config.data_dir, "ours.test")
    service = srv.call(start_trust(srv.app))
    try:
        signer = signing.get_signer()
        assert signer is not None
        assert b"d=ours.test" in signer(msg(ALICE), "ours.test")
    finally:
        srv.call(service.stop())
    assert signing.get_signer() is None
