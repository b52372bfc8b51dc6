"""The SMTP server end to end, in process, over real loopback sockets with real clients."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from smtp_inproc import InProcServer, RawClient

from merpati.delivery.api import BodyType

ALICE = "alice@example.org"
BOB = "bob@example.org"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcServer]:
    server = InProcServer(tmp_path / "data")
    server.add_user(ALICE, "alice-pw-1")
    server.add_user(BOB, "bob-pw-1")
    yield server
    server.stop()


def raw(srv: InProcServer, listener: str = "smtp") -> RawClient:
    client = RawClient(srv.host, srv.ports[listener])
    assert client.reply().startswith("220 mx.test ESMTP")
    return client


def test_mx_delivers_locally_with_trace_headers(srv: InProcServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        assert not c.has_extn("auth")
        c.starttls(context=srv.tls_context())
        c.ehlo("client.example")
        refused = c.sendmail("sender@remote.example", [ALICE], b"Subject: hi\r\n\r\nhello\r\n")
        assert refused == {}
    (msg,) = srv.inbox(ALICE)
    lines = msg.split(b"\r\n")
    assert lines[0] == b"Return-Path: <sender@remote.example>"
    assert lines[1] == b"Delivered-To: alice@example.org"
    head = msg.split(b"\r\n\r\n")[0].decode()
    assert "Received: from client.example ([127.0.0.1])" in head
    assert "by mx.test (Merpati)" in head and "with ESMTPS id " in head
    assert "(using TLSv1.3 with cipher " in head and "for <alice@example.org>;" in head
    assert msg.endswith(b"Subject: hi\r\n\r\nhello\r\n")
    assert "Date:" not in head  # added on submission only


def test_mx_roles_relay_unknown_user_null_sender(srv: InProcServer) -> None:
    c = raw(srv)
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<someone@elsewhere.example>") == "554 5.7.1 Relay access denied"
    assert c.cmd("RCPT TO:<nobody@example.org>") == "550 5.1.1 No such user here"
    assert c.cmd("RCPT TO:<Alice@EXAMPLE.org>").startswith("250 2.1.5")
    assert c.cmd("RCPT TO:<bad address@example.org>") == "501 5.1.3 Bad address syntax"
    assert c.cmd("RCPT TO:<postmaster>").startswith("550 5.1.1")  # no such account here
    assert c.cmd("DATA").startswith("354")
    assert c.cmd(b"Subject: bounce\r\n\r\nx\r\n.").startswith("250 2.0.0")
    assert c.cmd("VRFY alice").startswith("252 2.5.0")
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    (msg,) = srv.inbox(ALICE)
    assert msg.startswith(b"Return-Path: <>\r\n")


def test_aliases_plus_addressing_catch_all_and_dedup(srv: InProcServer) -> None:
    accounts = srv.app.accounts
    accounts.add_alias("team2@example.org", [ALICE, BOB])
    accounts.add_alias("team@example.org", [ALICE, BOB, "team2@example.org"])
    accounts.add_alias("@example.org", [BOB])
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        refused = c.sendmail(
            "s@remote.example",
            ["team@example.org", "alice+news@example.org", "random@example.org", ALICE],
            b"Subject: fan-out\r\n\r\nx\r\n",
        )
        assert refused == {}
    alice, bob = srv.inbox(ALICE), srv.inbox(BOB)
    assert len(alice) == 1 and len(bob) == 1  # one copy each, whatever the route
    assert b"Delivered-To:" not in alice[0]  # shared hard-linked copy: no per-account header
    assert srv.queue is not None and srv.queue.items == []


def test_submission_needs_tls_then_auth_then_owned_sender(srv: InProcServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["submission"], timeout=10) as c:
        c.ehlo("laptop")
        assert not c.has_extn("auth")
        code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
        assert (code, text[:6]) == (538, b"5.7.11")
        assert c.docmd("MAIL", "FROM:<alice@example.org>") == (
            530,
            b"5.7.0 Authentication required",
        )
        c.starttls(context=srv.tls_context())
        c.ehlo("laptop")
        assert c.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login(ALICE, "wrong")
        c.login(ALICE, "alice-pw-1")
        assert c.docmd("MAIL", "FROM:<bob@example.org>") == (
            553,
            b"5.7.1 Sender address not owned by the authenticated user",
        )
        assert c.docmd("MAIL", "FROM:<>")[0] == 553
        refused = c.sendmail(
            "alice+lists@example.org",
            [BOB, "friend@remote.example"],
            b"Subject: from alice\r\n\r\nhello\r\n",
        )
        assert refused == {}
    (msg,) = srv.inbox(BOB)
    head = msg.split(b"\r\n\r\n")[0].decode()
    assert "with ESMTPSA id" in head
    assert "authenticated user" not in head  # received_show_auth_user is off
    assert "\r\nDate: " in head and "\r\nMessage-ID: <" in head  # rfc6409:8
    assert srv.queue is not None
    ((env, queued, rcpts),) = srv.queue.items
    assert [r.address for r in rcpts] == ["friend@remote.example"]
    assert env.auth_user == ALICE and env.mail_from == "alice+lists@example.org"
    assert queued.startswith(b"Received: ") and b"Return-Path" not in queued
    assert srv.queue.woken >= 1


def test_submissions_implicit_tls_smtputf8_and_8bit(srv: InProcServer) -> None:
    srv.app.accounts.add_alias("jos\u00e9@example.org", [BOB])
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = "Jos\u00e9 <jos\u00e9@example.org>"
    msg["Subject"] = "caf\u00e9 \u2615"
    msg.set_content("Gr\u00fc\u00dfe aus K\u00f6ln\n", cte="8bit")
    with smtplib.SMTP_SSL(
        srv.host, srv.ports["submissions"], context=srv.tls_context(), timeout=10
    ) as c:
        c.login(ALICE, "alice-pw-1")
        c.send_message(msg)  # smtplib adds SMTPUTF8 and BODY=8BITMIME itself
    (stored,) = srv.inbox(BOB)
    assert "Gr\u00fc\u00dfe aus K\u00f6ln".encode() in stored
    assert "Subject: caf\u00e9 \u2615".encode() in stored
    assert b"with UTF8SMTPSA id" in stored


def test_bdat_binarymime_over_raw_commands(srv: InProcServer) -> None:
    c = raw(srv)
    ehlo = c.cmd("EHLO client.example")
    assert "250-CHUNKING" in ehlo and "250-BINARYMIME" in ehlo
    body1 = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\n\r.\r\n"
    body2 = bytes(range(256))
    c.send(
        b"MAIL FROM:<s@remote.example> BODY=BINARYMIME\r\nRCPT TO:<alice@example.org>\r\n"
        + b"BDAT %d\r\n" % len(body1)
        + body1
        + b"BDAT %d LAST\r\n" % len(body2)
        + body2
    )
    assert [c.reply()[:3] for _ in range(4)] == ["250", "250", "250", "250"]
    (msg,) = srv.inbox(ALICE)
    assert msg.endswith(body1 + body2)
    assert c.cmd("QUIT").startswith("221")


def test_pipelining_and_dsn_with_aiosmtplib(srv: InProcServer) -> None:
    async def send() -> None:
        client = aiosmtplib.SMTP(hostname=srv.host, port=srv.ports["smtp"], start_tls=False)
        await client.connect()
        await client.ehlo()
        assert client.supports_extension("pipelining")
        msg = b"Subject: many\r\n\r\nbody\r\n"
        errors, _ = await client.sendmail(
            "s@remote.example",
            [ALICE, BOB, "ghost@example.org"],
            msg,
            rcpt_options=["NOTIFY=FAILURE,DELAY"],
            mail_options=["RET=HDRS", "ENVID=abc123"],
        )
        assert set(errors) == {"ghost@example.org"}
        assert errors["ghost@example.org"].code == 550
        await client.quit()

    asyncio.run(send())
    assert len(srv.inbox(ALICE)) == 1 and len(srv.inbox(BOB)) == 1


def test_remote_recipients_without_a_queue(tmp_path: Path) -> None:
    server = InProcServer(tmp_path / "d", queue=False, plaintext_auth=True)
    try:
        server.add_user(ALICE, "alice-pw-1")
        with smtplib.SMTP(server.host, server.ports["submission"], timeout=10) as c:
            c.login(ALICE, "alice-pw-1")
            c.docmd("MAIL", "FROM:<alice@example.org>")
            assert c.docmd("RCPT", "TO:<x@remote.example>")[0] == 451
    finally:
        server.stop()


def test_quota_at_rcpt_and_at_end_of_data(srv: InProcServer) -> None:
    srv.app.accounts.set_quota(BOB, 2000)
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        # Too big for bob's quota, found only at delivery: 452 4.2.2 at the end of data.
        with pytest.raises(smtplib.SMTPDataError) as err:
            c.sendmail("s@remote.example", [BOB], b"Subject: big\r\n\r\n" + b"x\r\n" * 1500)
        assert err.value.smtp_code == 452 and err.value.smtp_error.startswith(b"4.2.2")
        c.sendmail("s@remote.example", [BOB], b"Subject: small\r\n\r\n" + b"y\r\n" * 250)
        # Mixed: alice takes it, bob is full: 250, and bob's copy goes to the queue.
        c.sendmail("s@remote.example", [ALICE, BOB], b"Subject: mixed\r\n\r\n" + b"z\r\n" * 750)
        srv.app.accounts.set_quota(BOB, 100)
        c.ehlo("again")
        c.docmd("MAIL", "FROM:<s@remote.example>")
        assert c.docmd("RCPT", "TO:<bob@example.org>") == (452, b"4.2.2 Mailbox full")
    assert len(srv.inbox(BOB)) == 1 and len(srv.inbox(ALICE)) == 1
    assert srv.queue is not None
    ((env, _, rcpts),) = srv.queue.items
    assert [r.address for r in rcpts] == [BOB] and env.body is BodyType.SEVEN_BIT


def test_mail_loop_refused(srv: InProcServer) -> None:
    hops = b"".join(
        b"Received: from h%d by h%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i) for i in range(51)
    )
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        with pytest.raises(smtplib.SMTPDataError) as err:
            c.sendmail("s@remote.example", [ALICE], hops + b"Subject: loop\r\n\r\nx\r\n")
        assert err.value.smtp_code == 554 and err.value.smtp_error.startswith(b"5.4.6")
        fifty = b"".join(hops.split(b"\r\n")[i] + b"\r\n" for i in range(50))
        c.sendmail("s@remote.example", [ALICE], fifty + b"Subject: ok\r\n\r\nx\r\n")
    assert len(srv.inbox(ALICE)) == 1


def test_starttls_pipelined_injection_is_discarded(srv: InProcServer) -> None:
    import ssl

    c = raw(srv)
    c.cmd("EHLO client.example")
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
    assert c.reply() == "220 2.0.0 Ready to start TLS"
    tls = srv.tls_context().wrap_socket(c.sock, server_hostname="mx.test")
    c.sock, c.buf = tls, b""
    assert c.cmd("RCPT TO:<alice@example.org>") == "503 5.5.1 Send EHLO or HELO first"
    c.cmd("EHLO client.example")
    assert c.cmd("RCPT TO:<alice@example.org>") == "503 5.5.1 Send MAIL first"
    assert isinstance(tls, ssl.SSLSocket)
    c.close()


def test_authenticated_client_may_relay_through_port_25(srv: InProcServer) -> None:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.starttls(context=srv.tls_context())
        c.ehlo("laptop")
        c.docmd("MAIL", "FROM:<alice@example.org>")
        assert c.docmd("RCPT", "TO:<far@remote.example>")[0] == 554  # not yet authenticated
        c.rset()
        c.login(ALICE, "alice-pw-1")
        assert c.sendmail(ALICE, ["far@remote.example"], b"Subject: relay\r\n\r\nx\r\n") == {}
    assert srv.queue is not None
    ((_env, message, rcpts),) = srv.queue.items
    assert [r.address for r in rcpts] == ["far@remote.example"]
    assert b"with ESMTPSA id" in message


def test_received_names_the_user_only_when_configured(tmp_path: Path) -> None:
    server = InProcServer(tmp_path / "d", plaintext_auth=True, show_auth_user=True)
    try:
        server.add_user(ALICE, "alice-pw-1")
        with smtplib.SMTP(server.host, server.ports["submission"], timeout=10) as c:
            c.login(ALICE, "alice-pw-1")
            c.sendmail(ALICE, [ALICE], b"Subject: me\r\n\r\nx\r\n")
        (msg,) = server.inbox(ALICE)
        head = msg.split(b"\r\n\r\n")[0]
        assert b"(authenticated user alice@example.org)" in head
        assert b"with ESMTPA id" in head  # no TLS here: plaintext auth was allowed
    finally:
        server.stop()


def test_a_broken_lookup_is_a_temporary_failure_not_a_crash(srv: InProcServer) -> None:
    c = raw(srv)
    c.cmd("EHLO client.example")
    assert c.cmd("MAIL FROM:<s@remote.example>").startswith("250")
    srv.app.accounts.close()  # the account database goes away under the session
    assert c.cmd("RCPT TO:<alice@example.org>") == "451 4.3.0 Temporary failure, try again later"
    assert c.cmd("NOOP") == "250 2.0.0 OK"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
