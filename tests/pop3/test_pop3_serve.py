"""POP3 through a real ``merpati serve`` subprocess (the registry wiring, config, TLS
material and accounts of the real server), driven by poplib."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
from collections.abc import Callable

import pytest

from harness import MerpatiServer, eventually

POP3_ONLY = ("pop3", "pop3s")
QUICK_STOP = '[limits]\nshutdown_grace = "1s"\n'


def test_serve_pop3_and_pop3s(server_factory: Callable[..., MerpatiServer]) -> None:
    server = server_factory(listeners=POP3_ONLY, extra_toml=QUICK_STOP)
    password = server.add_user("carol@example.org")
    host, port = server.address("pop3")
    client = poplib.POP3(host, port, timeout=10)
    try:
        assert "STLS" in client.capa()
        with pytest.raises(poplib.error_proto, match="STLS"):
            client.user("carol@example.org")
        client.stls(context=server.client_tls_context())
        client.user("carol@example.org")
        assert client.pass_(password).startswith(b"+OK carol@example.org has 0 messages")
        assert client.stat() == (0, 0)
        # The same account over pop3s while this session holds the maildrop.
        host, sport = server.address("pop3s")
        other = poplib.POP3_SSL(host, sport, timeout=10, context=server.client_tls_context())
        try:
            other.user("Carol@Example.org")
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                other.pass_(password)
            other.user("carol@example.org")
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
                other.pass_("not the password")
        finally:
            other.quit()
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()
    assert "pop3.session" in server.log()


def test_smtp_delivery_then_pop3(server_factory: Callable[..., MerpatiServer]) -> None:
    """Mail in through the MX listener, out through POP3S: byte-exact bodies, UIDL stable
    across sessions, new mail only in the next session, deletion only at QUIT; and plaintext
    credentials where the operator allows them."""
    srv = server_factory(
        listeners=("smtp", "imap", "pop3", "pop3s"),
        allow_plaintext_auth=True,
        extra_toml=QUICK_STOP,
    )
    password = srv.add_user("erin@example.org")
    # allow_plaintext_auth: credentials accepted on the plaintext listener without STLS.
    plain = poplib.POP3(*srv.address("pop3"), timeout=10)
    assert "USER" in plain.capa()
    plain.user("erin@example.org")
    assert plain.pass_(password).startswith(b"+OK erin@example.org has 0 messages")
    plain.quit()
    bodies = [
        b"Line one\r\n.starts with a dot\r\n..two dots\r\n\r\nend " + bytes([48 + i]) + b"\r\n"
        for i in range(3)
    ]

    def send(i: int) -> None:
        msg = (
            f"From: someone@example.net\r\nTo: erin@example.org\r\nSubject: m{i}\r\n"
            f"Message-ID: <m{i}@example.net>\r\n\r\n"
        ).encode() + bodies[i]
        with smtplib.SMTP(*srv.address("smtp"), timeout=10) as smtp:
            smtp.sendmail("someone@example.net", ["erin@example.org"], msg)

    # Delivered a moment after the 250 (intake journal): the second is sent once the first is in.
    send(0)
    eventually(lambda: list((srv.data_dir / "mail").glob("*/*/new/*")))
    send(1)

    def login() -> poplib.POP3_SSL:
        client = poplib.POP3_SSL(
            *srv.address("pop3s"), timeout=10, context=srv.client_tls_context()
        )
        client.user("erin@example.org")
        client.pass_(password)
        return client

    imap = imaplib.IMAP4(*srv.address("imap"), timeout=10)
    imap.login("erin@example.org", password)
    imap.select("INBOX")
    eventually(lambda: imap.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 2)"))
    client = login()
    assert client.stat()[0] == 2
    first_uidls = client.uidl()[1]
    for n in (1, 2):
        text = b"".join(line + b"\r\n" for line in client.retr(n)[1])
        assert text.endswith(b"\r\n\r\n" + bodies[n - 1])
        assert b"Received: " in text
    send(2)
    eventually(lambda: b"UIDNEXT 4" in imap.status("INBOX", "(UIDNEXT)")[1][0])
    assert client.stat()[0] == 2, "the maildrop is the INBOX as it was at login"
    client.dele(1)
    imap.noop()
    client.quit()

    # IMAP sees what POP3 did: RETR set \Seen, the QUIT expunged message 1.
    assert imap.noop()[0] == "OK"
    assert b"1" in (imap.response("EXPUNGE")[1] or [b""])[0]
    imap.response("FETCH")  # drop unsolicited flag updates seen so far
    _, lines = imap.fetch("1:*", "(FLAGS)")
    flags = {}
    for line in lines:
        m = re.match(rb"(\d+) \(.*FLAGS \(([^)]*)\)", line if isinstance(line, bytes) else b"")
        if m:
            flags[int(m.group(1))] = m.group(2).split()
    assert sorted(flags) == [1, 2]
    assert b"\\Seen" in flags[1] and b"\\Seen" not in flags[2]
    imap.logout()

    client = login()
    uidls = client.uidl()[1]
    assert len(uidls) == 2
    assert uidls[0].split()[1] == first_uidls[1].split()[1], "UIDL survives renumbering"
    assert b"".join(line + b"\r\n" for line in client.retr(2)[1]).endswith(bodies[2])
    client.quit()
