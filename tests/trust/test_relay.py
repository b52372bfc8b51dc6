"""The relay test battery against a real `merpati serve` over loopback: every form that once
made mail servers open relays is refused when the client has not authenticated, however it
presents itself. A positive control shows the server accepts its own users."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import MerpatiServer, running_server

from .dnsserver import DnsServer

LOCAL = "ours.test"
USER = f"user@{LOCAL}"


@pytest.fixture(scope="module")
def relay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    dns = DnsServer()  # answers NXDOMAIN for everything: no real DNS is asked
    base: Path = tmp_path_factory.mktemp("relay")
    extra = f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout = "1s"\n'
    try:
        with running_server(
            base, hostname=f"mx.{LOCAL}", listeners=("smtp", "submission"), extra_toml=extra
        ) as srv:
            srv.add_user(USER, "user-password-1")
            yield srv
    finally:
        dns.stop()


def rcpt_reply(
    srv: MerpatiServer,
    rcpt: str,
    helo: str = "client.example",
    mail_from: str = "someone@remote.test",
) -> tuple[int, bytes]:
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as c:
        c.ehlo(helo)
        code, _ = c.mail(mail_from)
        assert code == 250
        c.putcmd("rcpt", f"TO:{rcpt}")
        return c.getreply()


RELAY_FORMS = [
    ("percent hack", f"<user%remote.test@{LOCAL}>"),
    ("double percent hack", f"<user%remote.test%{LOCAL}@{LOCAL}>"),
    ("quoted at sign", f'<"user@remote.test"@{LOCAL}>'),
    ("source route", f"<@{LOCAL}:user@remote.test>"),
    ("two-hop source route", f"<@{LOCAL},@mx.{LOCAL}:user@remote.test>"),
    ("bang path", f"<remote.test!user@{LOCAL}>"),
    ("two at signs", f"<user@remote.test@{LOCAL}>"),
    ("plain remote", "<user@remote.test>"),
    ("remote with trailing dot", "<user@remote.test.>"),
    ("address literal", "<user@[192.0.2.1]>"),
    ("percent hack to a literal", f"<user%[192.0.2.1]@{LOCAL}>"),
    ("unbracketed remote", "user@remote.test"),
]


@pytest.mark.parametrize(("name", "rcpt"), RELAY_FORMS, ids=[n for n, _ in RELAY_FORMS])
def test_relay_form_is_refused(relay_server: MerpatiServer, name: str, rcpt: str) -> None:
    code, text = rcpt_reply(relay_server, rcpt)
    assert 500 <= code < 600, (name, code, text)


@pytest.mark.parametrize("helo", [f"mx.{LOCAL}", LOCAL, "localhost", "[127.0.0.1]", "127.0.0.1"])
def test_local_looking_helo_and_local_sender_do_not_relay(
    relay_server: MerpatiServer, helo: str
) -> None:
    code, text = rcpt_reply(relay_server, "<user@remote.test>", helo=helo, mail_from=USER)
    assert 500 <= code < 600, (helo, code, text)


def test_unauthenticated_submission_cannot_relay(relay_server: MerpatiServer) -> None:
    with smtplib.SMTP(relay_server.host, relay_server.ports["submission"], timeout=10) as c:
        c.ehlo("client.example")
        code, _ = c.mail(USER)
        if code == 250:
            code, _ = c.rcpt("user@remote.test")
        assert 500 <= code < 600


def test_whole_transaction_does_not_queue(relay_server: MerpatiServer) -> None:
    with smtplib.SMTP(relay_server.host, relay_server.ports["smtp"], timeout=10) as c:
        c.ehlo("client.example")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail(
                "a@remote.test",
                ["user@remote.test", f"x%remote.test@{LOCAL}"],
                b"Subject: relay?\r\n\r\nbody\r\n",
            )
    listing = relay_server.cli("queue", "list", check=False)
    assert "remote.test" not in listing.stdout


def test_control_local_user_is_accepted(relay_server: MerpatiServer) -> None:
    code, _ = rcpt_reply(relay_server, f"<{USER}>")
    assert code == 250
