"""The sans-I/O SMTP session driven by byte strings: transcripts, fed whole and byte by byte."""

from __future__ import annotations

import base64

import pytest
from smtp_transcript import EHLO, Result, feed, run, settings, transaction

from merpati.delivery.api import BodyType
from merpati.smtp import replies
from merpati.smtp.events import AuthRequest, MessageRequest, RcptRequest
from merpati.smtp.session import Session, UsageError


def both(data: bytes, **kw: object) -> Result:
    """Run whole and one byte at a time; both must give the same bytes and messages."""
    whole = run(data, **kw)  # type: ignore[arg-type]
    bytewise = run(data, chunk=1, **kw)  # type: ignore[arg-type]
    assert whole.output == bytewise.output
    assert [m.data for m in whole.messages] == [m.data for m in bytewise.messages]
    return whole


def test_greeting_and_ehlo_advertise_every_extension() -> None:
    r = both(EHLO + b"QUIT\r\n")
    assert r.lines[0] == "220 mx.example.org ESMTP Merpati"
    ehlo = r.lines[1:-1]
    keywords = {line[4:].split(" ")[0] for line in ehlo[1:]}
    assert {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"} <= keywords
    assert {"CHUNKING", "BINARYMIME", "DSN", "STARTTLS"} <= keywords
    assert "AUTH" not in keywords  # not before TLS
    assert "250-SIZE 10000" in ehlo
    assert r.lines[-1] == "221 2.0.0 Bye"
    assert r.closed


def test_simple_transaction_with_dot_stuffing() -> None:
    body = b"Subject: x\r\n\r\n..leading dot\r\n.\r\n"
    r = both(EHLO + transaction(body) + b"QUIT\r\n")
    assert r.codes == ["220", "250", "250", "250", "354", "250", "221"]
    (msg,) = r.messages
    assert msg.data == b"Subject: x\r\n\r\n.leading dot\r\n"
    assert msg.envelope.mail_from == "s@example.net"
    assert [x.address for x in msg.envelope.recipients] == ["a@example.org"]
    assert msg.envelope.helo == "client.example"
    assert msg.envelope.client_ip == "192.0.2.1"


def test_first_line_dot_and_empty_body() -> None:
    r = both(EHLO + transaction(b".x\r\n.\r\n") + transaction(b".\r\n"))
    assert [m.data for m in r.messages] == [b"x\r\n", b""]


def test_pipelined_replies_leave_in_one_write() -> None:
    session = Session(settings())
    session.data_to_send()
    session.receive_data(EHLO + transaction(b"hi\r\n.\r\n") + b"NOOP\r\n")
    events = []
    while (event := session.next_event()).__class__ is not type(None):
        if not isinstance(event, RcptRequest | MessageRequest) and event is not None:
            if hasattr(event, "command"):
                session.respond(replies.MAIL_OK)
                continue
            break
        events.append(event)
        session.respond(replies.RCPT_OK if isinstance(event, RcptRequest) else replies.OK)
    out = session.data_to_send().decode()
    assert [line[:3] for line in out.split("\r\n")[:-1] if line[3] == " "] == [
        "250", "250", "250", "354", "250", "250"
    ]  # fmt: skip


def test_answer_required_before_next_event() -> None:
    session = Session(settings())
    session.receive_data(EHLO + b"MAIL FROM:<a@b.example>\r\n")
    session.next_event()
    with pytest.raises(UsageError):
        session.next_event()


@pytest.mark.parametrize(
    "smuggled",
    [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r"],
    ids=["lf-dot-lf", "crlf-dot-lf", "lf-dot-crlf", "cr-dot-cr", "crlf-dot-cr"],
)
def test_smtp_smuggling_is_not_an_end_of_data(smuggled: bytes) -> None:
    # rfc5321:4.1.1.4 only CRLF.CRLF ends the data; a bare-LF/CR variant must neither end the
    # message (so the "smuggled" MAIL is never run as a command) nor be stored.
    inner = b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
    body = b"Subject: hi\r\n\r\nhello" + smuggled + inner + b"forged\r\n.\r\n"
    r = both(EHLO + transaction(body) + b"NOOP\r\n")
    assert r.messages == []
    assert "550 5.6.0" in r.lines[-2]
    assert r.lines[-1] == "250 2.0.0 OK"  # still in sync: the NOOP after the real end
    assert r.codes.count("354") == 1


def test_data_over_size_is_drained_and_refused_once() -> None:
    big = (b"x" * 78 + b"\r\n") * 400  # 32 000 octets, limit 10 000
    r = both(EHLO + transaction(big + b".\r\n") + b"NOOP\r\n")
    assert r.messages == []
    assert r.lines.count("552 5.3.4 Message too big") == 1
    assert r.lines[-1] == "250 2.0.0 OK"
    session = r.session
    assert session is not None and len(session._buf) == 0


def test_data_over_size_does_not_buffer_it() -> None:
    session = Session(settings())
    session.receive_data(EHLO + transaction(b""))
    for _ in range(4):
        while session.next_event().__class__.__name__ != "Signal":
            session.respond(replies.OK)
    for _ in range(100):
        session.receive_data(b"y" * 998 + b"\r\n")
        session.next_event()
        assert len(session._buf) <= 12_000
    session.receive_data(b".\r\n")
    session.next_event()
    assert b"552 5.3.4" in session.data_to_send()


def test_dot_stuffed_message_exactly_at_limit_is_accepted() -> None:
    line = b".." + b"a" * 96 + b"\r\n"  # 100 raw octets, 99 after unstuffing
    body = line * 101  # 10 100 raw, 9 999 unstuffed: under the 10 000 limit
    r = both(EHLO + transaction(body + b".\r\n"))
    (msg,) = r.messages
    assert len(msg.data) == 9_999


def test_declared_size_refused_at_mail() -> None:
    r = both(
        EHLO + b"MAIL FROM:<s@example.net> SIZE=10001\r\nMAIL FROM:<s@example.net> SIZE=10\r\n"
    )
    assert r.lines[-2] == "552 5.3.4 Declared message size exceeds the limit"
    assert r.lines[-1] == "250 2.1.0 Sender OK"


def test_bdat_chunks_binary_and_last() -> None:
    part1 = b"Subject: b\r\n\r\nbinary\n\r\n.\r\n\0"
    part2 = b"tail"
    cmds = (
        EHLO
        + b"MAIL FROM:<s@example.net> BODY=BINARYMIME\r\nRCPT TO:<a@example.org>\r\n"
        + b"BDAT %d\r\n" % len(part1)
        + part1
        + b"BDAT %d LAST\r\n" % len(part2)
        + part2
        + b"BDAT 0 LAST\r\n"
    )
    r = both(cmds)
    (msg,) = r.messages
    assert msg.data == part1 + part2
    assert msg.via_bdat and msg.envelope.body is BodyType.BINARY
    assert f"250 2.0.0 {len(part1)} octets received" in r.lines
    assert r.lines[-1] == "503 5.5.1 Send MAIL first"  # BDAT 0 LAST with no transaction


def test_bdat_over_size_fails_the_transaction_and_stays_in_sync() -> None:
    cmds = (
        EHLO
        + b"MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.org>\r\n"
        + b"BDAT 6000\r\n"
        + b"a" * 6000
        + b"BDAT 6000\r\n"
        + b"b" * 6000
        + b"BDAT 3 LAST\r\nabc"
        + b"RSET\r\nNOOP\r\n"
    )
    r = both(cmds)
    assert r.messages == []
    assert r.lines[-5:] == [
        "250 2.0.0 6000 octets received",
        "552 5.3.4 Message too big",
        "503 5.5.1 Transaction failed earlier; send RSET",
        "250 2.0.0 Reset",
        "250 2.0.0 OK",
    ]


def test_bdat_unparsable_closes() -> None:
    r = both(EHLO + b"BDAT x\r\nNOOP\r\n")
    assert r.closed and r.lines[-1].startswith("421 4.5.0")


def test_data_with_binarymime_needs_bdat() -> None:
    r = both(EHLO + b"MAIL FROM:<s@x.example> BODY=BINARYMIME\r\nRCPT TO:<a@b.example>\r\nDATA\r\n")
    assert r.lines[-1] == "503 5.5.1 BODY=BINARYMIME needs BDAT"


def test_command_line_limit() -> None:
    ok = b"NOOP " + b"a" * (512 - 7) + b"\r\n"  # exactly 512 octets with CRLF
    long = b"NOOP " + b"a" * (512 - 6) + b"\r\n"
    huge = b"NOOP " + b"a" * 50_000 + b"\r\n"
    r = both(EHLO + ok + long + huge + b"NOOP\r\n")
    assert r.lines[-4:] == [
        "250 2.0.0 OK",
        "500 5.5.2 Line too long (rfc5321:4.5.3.1.4)",
        "500 5.5.2 Line too long (rfc5321:4.5.3.1.4)",
        "250 2.0.0 OK",
    ]


def test_text_line_limit() -> None:
    ok = b"a" * 998 + b"\r\n"
    r = both(EHLO + transaction(ok + b".\r\n") + transaction(b"b" * 999 + b"\r\n.\r\n"))
    assert len(r.messages) == 1
    assert r.lines[-1] == "500 5.5.6 Text line too long (rfc5321:4.5.3.1.6)"


def test_too_many_recipients() -> None:
    rcpts = tuple(f"u{i}@example.org" for i in range(6))
    r = both(EHLO + transaction(b"x\r\n.\r\n", rcpts))
    assert "452 4.5.3 Too many recipients" in r.lines
    (msg,) = r.messages
    assert len(msg.envelope.recipients) == 5


def test_too_many_errors_closes() -> None:
    r = both(EHLO + b"FOO\r\n" * 20)
    assert r.closed
    assert r.lines[-1] == "421 4.7.0 Too many errors, closing connection"
    assert r.lines.count("500 5.5.2 Command unrecognised") == 10


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"MAIL FROM:<no-at-sign>", "501 5.1.3"),
        (b"MAIL FROM:<a@@b>", "501 5.1.3"),
        (b"MAIL FROM:<a b@c.example>", "501 5.1.3"),
        (b"MAIL FROM:<a@-bad-.example>", "501 5.1.3"),
        (b"MAIL FROM:a@b.example", "501 5.1.3"),
        (b"MAIL FROM:<a@b.example> FOO=1", "555 5.5.4"),
        (b"MAIL FROM:<a@b.example> BODY=9BIT", "501 5.5.4"),
        (b"MAIL FROM:<\xc3\xa9@b.example>", "553 5.6.7"),
        (b"MAIL TO:<a@b.example>", "501 5.5.4"),
        (b"NOOP \0", "500 5.5.2"),
        (b"NOOP \xff", "500 5.5.2"),
        (b"EHLO", "501 5.5.4"),
        (b"RCPT TO:<a@b.example>", "503 5.5.1"),
        (b"DATA", "503 5.5.1"),
        (b"DATA now", "503 5.5.1"),
        (b"VRFY postmaster", "252 2.5.0"),
        (b"EXPN staff", "502 5.5.1"),
        (b"HELP", "214 2.0.0"),
        (b"AUTH PLAIN", "538 5.7.11"),
        (b"STARTTLS now", "501 5.5.4"),
    ],
)
def test_bad_and_odd_commands(command: bytes, reply: str) -> None:
    r = both(EHLO + command + b"\r\nNOOP\r\n")
    assert r.lines[-2].startswith(reply), r.lines
    assert r.lines[-1] == "250 2.0.0 OK"


def test_smtputf8_and_dsn_parameters_reach_the_envelope() -> None:
    cmds = (
        EHLO
        + "MAIL FROM:<jos\u00e9@exampl\u00e9.org> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=q+2Bx\r\n"
        "RCPT TO:<\u00fc@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40example.org\r\n"
        "DATA\r\n".encode()
        + "Subject: caf\u00e9\r\n\r\n\u00e9\r\n.\r\n".encode()
    )
    r = both(cmds)
    (msg,) = r.messages
    env = msg.envelope
    assert env.mail_from == "jos\u00e9@exampl\u00e9.org"
    assert env.smtputf8 and env.body is BodyType.EIGHT_BIT
    assert env.ret == "HDRS" and env.envid == "q+2Bx"
    (rcpt,) = env.recipients
    assert rcpt.notify == frozenset({"SUCCESS", "FAILURE"})
    assert rcpt.orcpt == "rfc822;u+40example.org"


def test_utf8_rcpt_needs_smtputf8_transaction() -> None:
    cmds = EHLO + b"MAIL FROM:<a@b.example>\r\n" + "RCPT TO:<\u00fc@b.example>\r\n".encode()
    assert both(cmds).lines[-1].startswith("553 5.6.7")


def test_refused_recipient_and_no_valid_recipients() -> None:
    r = both(EHLO + transaction(b"x\r\n.\r\n", ("u@bad.example",)) + b"NOOP\r\n")
    assert r.lines[-5:] == [
        "550 5.1.1 No such user here",
        "554 5.5.1 No valid recipients",
        "500 5.5.2 Command unrecognised",  # the body line "x", read as a command
        "500 5.5.2 Command unrecognised",  # "."
        "250 2.0.0 OK",
    ]
    assert r.messages == []


def test_rset_ends_transaction_and_helo_resets() -> None:
    r = both(EHLO + b"MAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<c@d.example>\r\n")
    assert r.lines[-1] == "503 5.5.1 Send MAIL first"
    r = both(EHLO + b"MAIL FROM:<a@b.example>\r\nEHLO again\r\nMAIL FROM:<a@b.example>\r\n")
    assert r.lines[-1] == "250 2.1.0 Sender OK"


def test_starttls_discards_pipelined_commands_and_resets() -> None:
    cmds = EHLO + b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n"
    r = run(cmds, eof=False)
    assert r.lines[-1] == "220 2.0.0 Ready to start TLS"
    session = r.session
    assert session is not None and session.tls_active and session.helo is None
    # After TLS the session starts again: a MAIL before EHLO is a sequence error, and the
    # injected MAIL never ran.
    out = feed(session, b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<x@y.example>\r\n")
    lines = out.split("\r\n")[:-1]
    assert lines[0] == "503 5.5.1 Send EHLO or HELO first"
    assert lines[-1] == "503 5.5.1 Send MAIL first"
    assert "250-AUTH PLAIN LOGIN" in lines
    assert not any("STARTTLS" in line for line in lines)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_login_and_failures_after_tls() -> None:
    tls = settings(tls_active=True, role="submission")
    plain_ok = b"AUTH PLAIN " + _b64(b"\0user@example.org\0pw") + b"\r\n"
    r = both(EHLO + plain_ok + b"MAIL FROM:<user@example.org>\r\n", cfg=tls)
    assert r.lines[-2] == "235 2.7.0 Authentication successful"
    assert r.lines[-1] == "250 2.1.0 Sender OK"
    auth = [e for e in r.events if isinstance(e, AuthRequest)]
    assert auth[0].username == "user@example.org" and "pw" not in repr(auth[0])

    login = b"AUTH LOGIN\r\n" + _b64(b"user@example.org") + b"\r\n" + _b64(b"bad") + b"\r\n"
    r = both(EHLO + login + b"MAIL FROM:<user@example.org>\r\n", cfg=tls)
    assert r.lines[-4:] == [
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "535 5.7.8 Authentication credentials invalid",
        "530 5.7.0 Authentication required",
    ]
    r = both(EHLO + b"AUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\n", cfg=tls)
    assert r.lines[-4:] == [
        "334 ",
        "501 5.0.0 Authentication cancelled",
        "504 5.5.4 Unrecognised authentication mechanism",
        "501 5.5.2 Cannot decode authentication response",
    ]
    proxy = b"AUTH PLAIN " + _b64(b"other\0user@example.org\0pw") + b"\r\n"
    assert both(EHLO + proxy, cfg=tls).lines[-1].startswith("535 5.7.8")
    twice = plain_ok + plain_ok
    assert both(EHLO + twice, cfg=tls).lines[-1] == "503 5.5.1 Already authenticated"


def test_plaintext_auth_when_allowed() -> None:
    cfg = settings(plaintext_auth=True, role="submission")
    r = both(EHLO + b"AUTH PLAIN " + _b64(b"\0u@example.org\0pw") + b"\r\n", cfg=cfg)
    assert "250-AUTH PLAIN LOGIN" in r.lines
    assert r.lines[-1].startswith("235")


def test_submission_requires_auth() -> None:
    r = both(EHLO + b"MAIL FROM:<a@b.example>\r\n", cfg=settings(role="submission"))
    assert r.lines[-1] == "530 5.7.0 Authentication required"


def test_eof_mid_data_closes_without_message() -> None:
    r = both(EHLO + transaction(b"partial\r\n"))
    assert r.closed and r.messages == []


def test_junk_commands_are_limited() -> None:
    r = both(EHLO + b"NOOP\r\n" * 100 + b"RSET\r\nNOOP\r\n")
    assert r.lines.count("250 2.0.0 OK") == 100
    assert r.lines[-1] == "421 4.7.0 Too many commands without mail, closing connection"
    assert r.closed
