"""One destination against fake servers: relay with STARTTLS and AUTH PLAIN/LOGIN, implicit
TLS, no password without TLS, a failed TLS handshake retried in the clear, timeouts."""

from __future__ import annotations

import ssl

from fakesmtp import FakeSMTP
from qhelpers import client_tls, run

from merpati.delivery.api import Recipient
from merpati.dns.fake import FakeResolver
from merpati.queue.client import Timeouts
from merpati.queue.routing import Host, Route
from merpati.queue.transport import Destination, OutboundMessage, TransportSettings

MSG = OutboundMessage("alice@a.test", (Recipient("bob@b.test"),), b"Subject: x\r\n\r\nbody\r\n")


def settings(**kw: object) -> TransportSettings:
    args: dict[str, object] = {
        "hostname": "mx.a.test",
        "timeouts": Timeouts(
            connect=2, greeting=2, command=2, data_init=2, data_block=2, data_end=2
        ),
        "tls_context": client_tls,
    }
    args.update(kw)
    return TransportSettings(**args)  # type: ignore[arg-type]


async def send_via(sink: FakeSMTP, host: Host, s: TransportSettings) -> list[object]:
    port = await sink.start()
    host = Host(host.name, port, relay=host.relay, implicit_tls=host.implicit_tls)
    dest = Destination(Route((host,)), s, FakeResolver())
    try:
        return list(await dest.send(MSG))
    finally:
        await dest.close()
        await sink.close()


def test_relay_with_starttls_and_auth_plain(server_tls: ssl.SSLContext) -> None:
    sink = FakeSMTP(tls_context=server_tls, credentials=("relayuser", "s3cret"))
    out = run(
        send_via(
            sink,
            Host("127.0.0.1", 0, relay=True),
            settings(relay_username="relayuser", relay_password="s3cret"),
        )
    )
    assert out[0].result == "delivered" and out[0].tls  # type: ignore[attr-defined]
    t = sink.transactions[0]
    assert t.tls and t.auth == "relayuser"
    assert any(c.startswith("AUTH PLAIN") for c in sink.commands)


def test_relay_auth_login(server_tls: ssl.SSLContext) -> None:
    sink = FakeSMTP(tls_context=server_tls, credentials=("u", "p"), auth_mechanisms="LOGIN")
    s = settings(relay_username="u", relay_password="p")
    out = run(send_via(sink, Host("127.0.0.1", 0, relay=True), s))
    assert out[0].result == "delivered"  # type: ignore[attr-defined]
    assert "AUTH LOGIN" in sink.commands and sink.transactions[0].auth == "u"


def test_relay_bad_password_defers(server_tls: ssl.SSLContext) -> None:
    sink = FakeSMTP(tls_context=server_tls, credentials=("u", "p"))
    s = settings(relay_username="u", relay_password="wrong")
    out = run(send_via(sink, Host("127.0.0.1", 0, relay=True), s))
    assert out[0].result == "deferred" and out[0].code == 535  # type: ignore[attr-defined]
    assert sink.transactions == []


def test_relay_password_never_sent_without_tls() -> None:
    sink = FakeSMTP(credentials=("u", "p"))
    out = run(
        send_via(
            sink, Host("127.0.0.1", 0, relay=True), settings(relay_username="u", relay_password="p")
        )
    )
    assert out[0].result == "deferred" and out[0].status == "4.7.10"  # type: ignore[attr-defined]
    assert not any(c.startswith("AUTH") for c in sink.commands)


def test_implicit_tls(server_tls: ssl.SSLContext) -> None:
    sink = FakeSMTP(tls_context=server_tls, implicit_tls=True)
    out = run(send_via(sink, Host("127.0.0.1", 0, relay=True, implicit_tls=True), settings()))
    assert out[0].result == "delivered"  # type: ignore[attr-defined]
    assert sink.transactions[0].tls and "STARTTLS" not in sink.commands


def test_failed_tls_handshake_is_retried_in_the_clear() -> None:
    sink = FakeSMTP(broken_starttls=True)
    out = run(send_via(sink, Host("127.0.0.1", 0), settings()))
    assert out[0].result == "delivered" and out[0].tls is None  # type: ignore[attr-defined]
    assert sink.connections == 2 and not sink.transactions[0].tls


def test_final_reply_timeout_defers() -> None:
    sink = FakeSMTP(stall_after_data=1.5)
    s = settings(
        timeouts=Timeouts(connect=2, greeting=2, command=2, data_init=2, data_block=2, data_end=0.3)
    )
    out = run(send_via(sink, Host("127.0.0.1", 0), s))
    assert out[0].result == "deferred" and "timed out" in out[0].text  # type: ignore[attr-defined]


def test_without_pipelining_and_helo_fallback() -> None:
    sink = FakeSMTP(extensions=[], no_ehlo=True)
    out = run(send_via(sink, Host("127.0.0.1", 0), settings(tls_context=None)))
    assert out[0].result == "delivered"  # type: ignore[attr-defined]
    verbs = [c.split(":")[0].split(" ")[0] for c in sink.commands]
    assert verbs == ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert sink.transactions[0].mail_params == []


def test_greeting_timeout_defers() -> None:
    sink = FakeSMTP(greeting_delay=2.0)
    s = settings(
        timeouts=Timeouts(connect=2, greeting=0.3, command=2, data_init=2, data_block=2, data_end=2)
    )
    out = run(send_via(sink, Host("127.0.0.1", 0), s))
    assert out[0].result == "deferred" and "timed out" in out[0].text  # type: ignore[attr-defined]
    assert sink.transactions == []
