"""End to end, nothing mocked: a real `merpati serve` signs what its queue sends. A user
submits over STARTTLS + AUTH to a remote address; the queue resolves the remote MX through
the test DNS server and delivers to an aiosmtpd sink on 127.0.0.1; the message the sink got
verifies with dkimpy's verifier over the records `merpati dns` printed, and our own inbound
checks (as the receiving side would run them) give SPF, DKIM and DMARC pass."""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller

from harness import MerpatiServer, free_port, running_server
from merpati.config import DNSConfig
from merpati.server import registry
from merpati.trust.inbound import check_inbound

from .dnsserver import DnsServer
from .helpers import dkimpy_dnsfunc

PASSWORD = "alice-password-1"


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextlib.contextmanager
def make_world(base: Path, extra: str = "") -> Iterator[tuple[MerpatiServer, DnsServer, Sink]]:
    if registry.resolve("merpati.queue.service:start_queue_service") is None:
        pytest.skip("the outbound queue (merpati.queue) is not on this branch yet")
    dns = DnsServer()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    toml = (
        f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
        f'[delivery]\nport = {controller.port}\nretry = ["1s"]\n{extra}'
    )
    try:
        with running_server(
            base, hostname="mx.ours.test", listeners=("smtp", "submission"), extra_toml=toml
        ) as srv:
            srv.add_user("alice@ours.test", PASSWORD)  # `domain add` makes the DKIM keys
            doc = json.loads(srv.cli("dns", "ours.test", "--json").stdout)
            for r in doc["records"]:
                dns.add(r["name"], r["type"], r["value"])
            dns.add("mx.ours.test", "A", "127.0.0.1")
            dns.add("remote.test", "MX", "10 sink.remote.test.")
            dns.add("sink.remote.test", "A", "127.0.0.1")
            yield srv, dns, sink
    finally:
        controller.stop()
        dns.stop()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MerpatiServer, DnsServer, Sink]]:
    # The test client is on loopback: checked like any other, so that our results exist.
    with make_world(tmp_path_factory.mktemp("e2e"), "[policy]\ntrusted_networks = []\n") as w:
        yield w


def wait_for(sink: Sink) -> tuple[str, list[str], bytes]:
    """The first message the sink got (each test empties the sink first)."""
    deadline = time.monotonic() + 30
    while not sink.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sink.messages, "the queue did not deliver to the sink in 30 s"
    return sink.messages[0]


def test_outgoing_mail_is_signed_and_verifies(world: tuple[MerpatiServer, DnsServer, Sink]) -> None:
    srv, dns, sink = world
    sink.messages.clear()

    msg = EmailMessage()
    msg["From"] = "Alice <alice@ours.test>"
    msg["To"] = "bob@remote.test"
    msg["Subject"] = "signed on the way out"
    msg.set_content("Hello Bob,\n\nthis one is signed.\n")
    with smtplib.SMTP(*srv.address("submission"), timeout=20) as c:
        c.starttls(context=MerpatiServer.client_tls_context())
        c.login("alice@ours.test", PASSWORD)
        c.send_message(msg)

    mail_from, rcpts, data = wait_for(sink)
    assert mail_from == "alice@ours.test" and rcpts == ["bob@remote.test"]
    head = data.split(b"\r\n\r\n")[0]
    assert head.count(b"DKIM-Signature:") == 2
    dnsfunc = dkimpy_dnsfunc(dns)
    for idx in (0, 1):
        assert dkim.DKIM(data).verify(idx=idx, dnsfunc=dnsfunc)
    config = DNSConfig(nameservers=(("127.0.0.1", dns.port),), timeout=2.0)
    verdict = asyncio.run(
        check_inbound(data, mail_from, "mx.ours.test", "127.0.0.1", "mx.remote.test", config)
    )
    assert verdict.spf.result == "pass"
    assert [d.result for d in verdict.dkim] == ["pass", "pass"]
    assert verdict.dmarc.result == "pass" and verdict.disposition == "none"


def test_alias_forwarding_is_srs_rewritten_and_arc_sealed(
    world: tuple[MerpatiServer, DnsServer, Sink],
) -> None:
    srv, dns, sink = world
    sink.messages.clear()
    dns.add_txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    dns.add_txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    srv.cli("alias", "add", "fwd@ours.test", "bob@remote.test")
    with smtplib.SMTP(*srv.address("smtp"), timeout=20) as c:
        c.ehlo("client.sender.test")
        c.sendmail(
            "carol@sender.test",
            ["fwd@ours.test"],
            b"From: Carol <carol@sender.test>\r\nTo: fwd@ours.test\r\n"
            b"Subject: forward me\r\n\r\nHello\r\n",
        )
    mail_from, rcpts, data = wait_for(sink)
    assert rcpts == ["bob@remote.test"]
    assert mail_from.startswith("SRS0=") and mail_from.endswith("=sender.test=carol@ours.test")
    assert data.startswith(b"ARC-Seal: i=1;") or b"\r\nARC-Seal: i=1;" in data
    # The next hop: SPF passes for the rewritten sender, the ARC chain validates.
    config = DNSConfig(nameservers=(("127.0.0.1", dns.port),), timeout=2.0)
    verdict = asyncio.run(
        check_inbound(data, mail_from, "mx.ours.test", "127.0.0.1", "mx.remote.test", config)
    )
    assert verdict.spf.result == "pass" and verdict.spf.domain == "ours.test"
    assert verdict.arc.result == "pass"
    # DMARC for sender.test cannot pass at the next hop (SPF is now ours.test's): that is
    # what the ARC set is for, recording that SPF and DMARC passed at our hop.
    assert verdict.dmarc.result == "fail"
    aar = data.split(b"ARC-Authentication-Results:")[1].split(b"ARC-")[0].replace(b"\r\n\t", b" ")
    assert b"i=1; mx.ours.test" in aar
    assert b"spf=pass" in aar and b"smtp.mailfrom=carol@sender.test" in aar
    assert b"dmarc=pass" in aar
