"""End to end, nothing mocked: a real `merpati serve` signs what its queue sends. A user
submits over STARTTLS + AUTH to a remote address; the queue resolves the remote MX through
the test DNS server and delivers to an aiosmtpd sink on 127.0.0.1; the message the sink got
verifies with dkimpy's verifier over the records `merpati dns` printed, and our own inbound
checks (as the receiving side would run them) give SPF, DKIM and DMARC pass."""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[MerpatiServer, DnsServer, Sink]]:
    if registry.resolve("merpati.queue.service:start_queue_service") is None:
        pytest.skip("the outbound queue (merpati.queue) is not on this branch yet")
    dns = DnsServer()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    extra = (
        f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n'
        f'[delivery]\nport = {controller.port}\nretry = ["1s"]\n'
    )
    try:
        with running_server(
            tmp_path, hostname="mx.ours.test", listeners=("smtp", "submission"), extra_toml=extra
        ) as srv:
            yield srv, dns, sink
    finally:
        controller.stop()
        dns.stop()


def test_outgoing_mail_is_signed_and_verifies(world: tuple[MerpatiServer, DnsServer, Sink]) -> None:
    srv, dns, sink = world
    srv.add_user("alice@ours.test", PASSWORD)  # `domain add` makes the DKIM keys
    doc = json.loads(srv.cli("dns", "ours.test", "--json").stdout)
    for r in doc["records"]:
        dns.add(r["name"], r["type"], r["value"])
    dns.add("mx.ours.test", "A", "127.0.0.1")
    dns.add("remote.test", "MX", "10 sink.remote.test.")
    dns.add("sink.remote.test", "A", "127.0.0.1")

    msg = EmailMessage()
    msg["From"] = "Alice <alice@ours.test>"
    msg["To"] = "bob@remote.test"
    msg["Subject"] = "signed on the way out"
    msg.set_content("Hello Bob,\n\nthis one is signed.\n")
    with smtplib.SMTP(*srv.address("submission"), timeout=20) as c:
        c.starttls(context=MerpatiServer.client_tls_context())
        c.login("alice@ours.test", PASSWORD)
        c.send_message(msg)

    deadline = time.monotonic() + 30
    while not sink.messages and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sink.messages, "the queue did not deliver to the sink in 30 s"
    mail_from, rcpts, data = sink.messages[0]
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
