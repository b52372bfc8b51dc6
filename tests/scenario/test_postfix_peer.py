"""Postfix as Merpati's peer, nothing mocked: a private Postfix 3 instance on loopback
(tests/postfix_peer.py) talks SMTP with a real ``merpati serve`` in both directions.

- Postfix -> Merpati (port 25, Merpati as the MX): Postfix relays to Merpati and insists on
  STARTTLS; an 8-bit message and an SMTPUTF8 one arrive intact with our Received header, an
  unknown recipient is refused at RCPT (550 5.1.1, never accept-then-bounce) and Postfix's
  bounce for it (``MAIL FROM:<>``) comes back into the sender's mailbox.
- Merpati -> Postfix (the outbound queue as the client): a message submitted on 587 goes out
  through the queue, over STARTTLS, DKIM-signed, into Postfix's Maildir.

Skipped unless running as root with Debian's postfix installed (``make test`` installs it).
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnsserver import DNSServer
from harness import MerpatiServer, eventually
from mailread import imap_messages
from postfix_peer import HOSTNAME, PostfixPeer, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))

DOMAIN = "merpati.test"
ALICE = f"alice@{DOMAIN}"
JOSE = f"jos\u00e9@{DOMAIN}"
PASSWORD = "peer-password-1"


def _inbox(srv: MerpatiServer, user: str) -> list[email.message.Message]:
    raws = imap_messages(srv, user, PASSWORD)
    return [email.message_from_bytes(r, policy=email.policy.SMTPUTF8) for r in raws]


def test_postfix_relays_into_merpati(server_factory: Any, tmp_path: Path) -> None:
    srv: MerpatiServer = server_factory(listeners=("smtp", "imap"))
    srv.add_user(ALICE, PASSWORD)
    srv.add_user(JOSE, PASSWORD)
    with PostfixPeer(tmp_path, relayhost=f"[127.0.0.1]:{srv.ports['smtp']}") as pf:
        body8 = "Subject: eight\r\n\r\nGr\u00fc\u00dfe, caf\u00e9 \u00e0 8 bits\r\n".encode()
        utf8 = f"From: {ALICE}\r\nTo: {JOSE}\r\nSubject: utf\u00e9\r\n\r\n\u00e9t\u00e9\r\n"
        lost = b"Subject: lost\r\n\r\nto nobody\r\n"
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=20) as c:
            c.ehlo("client.peer.test")
            assert c.sendmail(ALICE, [ALICE], body8, ["BODY=8BITMIME"]) == {}
            assert c.sendmail(ALICE, [JOSE], utf8.encode(), ["SMTPUTF8", "BODY=8BITMIME"]) == {}
            assert c.sendmail(ALICE, [f"nobody@{DOMAIN}"], lost) == {}

        # Postfix's verdicts, from its own log
        eventually(lambda: pf.log().count("status=sent") >= 3, timeout=30)  # three deliveries
        log = pf.log()
        assert f"to=<nobody@{DOMAIN}>" in log and "status=bounced" in log
        assert "550 5.1.1" in log  # refused at RCPT, with our enhanced status code
        assert "TLS connection established to 127.0.0.1" in log  # STARTTLS, then TLS 1.2+

        eventually(lambda: len(_inbox(srv, ALICE)) >= 2, timeout=30)
        mails = _inbox(srv, ALICE)
        eight = next(m for m in mails if m["Subject"] == "eight")
        assert (
            eight.get_payload(decode=True)
            == "Gr\u00fc\u00dfe, caf\u00e9 \u00e0 8 bits\r\n".encode()
        )
        received = str(eight["Received"])  # the topmost: ours
        assert f"from {HOSTNAME} (" in received and "127.0.0.1" in received
        assert "with ESMTPS" in received and "TLSv1." in received
        assert str(eight["Return-Path"]) == f"<{ALICE}>"
        bounce = next(m for m in mails if m["Subject"] != "eight")
        assert str(bounce["Return-Path"]) == "<>"  # MAIL FROM:<> accepted on port 25
        assert bounce.get_content_type() == "multipart/report"
        assert f"nobody@{DOMAIN}" in bounce.as_string()

        jose = eventually(lambda: _inbox(srv, JOSE), timeout=30)
        assert str(jose[0]["Subject"]) == "utf\u00e9"
        assert "with UTF8SMTPS" in str(jose[0]["Received"])  # rfc6531:3.7.3


def test_merpati_delivers_to_postfix(server_factory: Any, tmp_path: Path) -> None:
    with (
        DNSServer(
            {("peer.test", "MX"): ["10 mx.peer.test."], ("mx.peer.test", "A"): ["127.0.0.1"]}
        ) as dns,
        PostfixPeer(tmp_path, domain="peer.test") as pf,
    ):
        srv: MerpatiServer = server_factory(
            f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "2s"\n\n'
            f'[delivery]\nport = {pf.port}\nretry = ["1s"]\nconnect_timeout = "5s"\n',
            listeners=("submission",),
        )
        srv.add_user(ALICE, PASSWORD)
        msg = "Subject: out\u00e9\r\nFrom: alice@merpati.test\r\n\r\nvers Postfix \u00e9t\u00e9\r\n"
        with smtplib.SMTP(*srv.address("submission"), timeout=20) as c:
            c.starttls(context=MerpatiServer.client_tls_context())
            c.login(ALICE, PASSWORD)
            assert c.sendmail(ALICE, ["bob@peer.test"], msg.encode(), ["BODY=8BITMIME"]) == {}

        got = eventually(pf.delivered, timeout=30)
        assert len(got) == 1
        mail = email.message_from_bytes(got[0], policy=email.policy.SMTPUTF8)
        assert str(mail["Subject"]) == "out\u00e9"
        assert "d=merpati.test" in str(mail["DKIM-Signature"])
        assert mail["Message-ID"] and mail["Date"]  # added at submission (rfc6409:8)
        top = str(mail["Received"])  # Postfix's, about our client
        # TLS; and SMTPUTF8, as the Subject is raw UTF-8 and Postfix offers it (rfc6531:3.4)
        assert "with UTF8SMTPS" in top and f"by {HOSTNAME}" in top
        assert "TLS connection established from" in pf.log()
        assert str(mail["Delivered-To"]) == "bob@peer.test"
