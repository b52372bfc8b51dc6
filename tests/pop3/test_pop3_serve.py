"""POP3 through a real ``merpati serve`` subprocess (the registry wiring, config, TLS
material and accounts of the real server), driven by poplib."""

from __future__ import annotations

import poplib
from collections.abc import Callable

import pytest

from harness import MerpatiServer

POP3_ONLY = ("pop3", "pop3s")


def test_serve_pop3_and_pop3s(server_factory: Callable[..., MerpatiServer]) -> None:
    server = server_factory(listeners=POP3_ONLY)
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


def test_serve_plaintext_auth_when_allowed(server_factory: Callable[..., MerpatiServer]) -> None:
    srv = server_factory(listeners=POP3_ONLY, allow_plaintext_auth=True)
    password = srv.add_user("dave@example.org")
    client = poplib.POP3(*srv.address("pop3"), timeout=10)
    client.user("dave@example.org")
    assert client.pass_(password).startswith(b"+OK")
    assert client.quit().startswith(b"+OK")
