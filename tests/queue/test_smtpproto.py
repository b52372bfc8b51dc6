"""The sans-I/O client protocol pieces: bytes in, replies out; commands and DATA out."""

from __future__ import annotations

import pytest

from merpati.queue.smtpproto import (
    MAX_REPLY_LINE,
    Extensions,
    Reply,
    ReplyParser,
    SMTPProtocolError,
    auth_plain,
    data_payload,
    mail_command,
    rcpt_command,
    xtext,
)

EHLO = (
    b"250-mx.b.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
    b"250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
)


def test_single_and_multiline_replies() -> None:
    p = ReplyParser()
    replies = p.feed(b"220 ready\r\n" + EHLO + b"550 5.1.1 no such user\r\n")
    assert [r.code for r in replies] == [220, 250, 550]
    assert replies[1].lines[0] == "mx.b.test hello"
    assert replies[2].status == "5.1.1"
    assert replies[2].permanent and not replies[2].transient
    assert replies[0].status == "2.0.0"
    assert not p.pending


def test_byte_at_a_time_gives_the_same_replies() -> None:
    data = b"220 ready\r\n" + EHLO + b"451 4.3.0 try later\r\n"
    whole = ReplyParser().feed(data)
    p = ReplyParser()
    parts: list[Reply] = []
    for i in range(len(data)):
        parts.extend(p.feed(data[i : i + 1]))
    assert parts == whole


def test_bare_code_and_lf_only() -> None:
    assert ReplyParser().feed(b"250\n") == [Reply(250, ("",))]


@pytest.mark.parametrize(
    "bad",
    [b"hello\r\n", b"25\r\n", b"250-a\r\n251 b\r\n", b"999 x\r\n", b"250xyz\r\n"],
)
def test_malformed_replies_raise(bad: bytes) -> None:
    with pytest.raises(SMTPProtocolError):
        ReplyParser().feed(bad)


def test_overlong_reply_line_raises_before_the_newline() -> None:
    with pytest.raises(SMTPProtocolError):
        ReplyParser().feed(b"250 " + b"x" * (MAX_REPLY_LINE + 10))


def test_status_mismatching_the_class_is_ignored() -> None:
    assert Reply(550, ("2.0.0 odd",)).status == "5.0.0"


def test_extensions() -> None:
    ext = Extensions.parse(ReplyParser().feed(EHLO)[0])
    assert ext.has("PIPELINING") and ext.has("SMTPUTF8") and ext.has("DSN")
    assert ext.size == 1000
    assert ext.auth == {"PLAIN", "LOGIN"}
    assert not ext.has("STARTTLS")


def test_mail_and_rcpt_parameters_only_when_offered() -> None:
    ext = Extensions.parse(ReplyParser().feed(EHLO)[0])
    cmd = mail_command(
        "alice@a.test", ext, size=42, eight_bit=True, smtputf8=True, ret="HDRS", envid="e 1+"
    )
    assert (
        cmd
        == b"MAIL FROM:<alice@a.test> SIZE=42 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=e+201+2B\r\n"
    )
    bare = Extensions()
    cmd = mail_command("", bare, size=42, eight_bit=True, smtputf8=False, ret="FULL", envid="x")
    assert cmd == b"MAIL FROM:<>\r\n"
    rc = rcpt_command(
        "bob@b.test", ext, notify=frozenset({"DELAY", "FAILURE"}), orcpt="rfc822;bob@b.test"
    )
    assert rc == b"RCPT TO:<bob@b.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@b.test\r\n"
    assert rcpt_command("bob@b.test", bare, notify=frozenset({"NEVER"}), orcpt=None) == (
        b"RCPT TO:<bob@b.test>\r\n"
    )


def test_xtext() -> None:
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"


def test_data_payload_dot_stuffing_and_line_endings() -> None:
    assert data_payload(b"a\r\n.b\r\n..c\r\n") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert data_payload(b".first\nbare lf\rbare cr") == (b"..first\r\nbare lf\r\nbare cr\r\n.\r\n")
    assert data_payload(b"") == b".\r\n"
    assert data_payload(b"x\r\n.\r\n") == b"x\r\n..\r\n.\r\n"


def test_auth_plain() -> None:
    assert auth_plain("u", "p") == b"AHUAcA=="


def test_needs_smtputf8() -> None:
    from merpati.queue.smtpproto import needs_smtputf8

    assert not needs_smtputf8("a@a.test", ["b@b.test"], b"Subject: x\r\n\r\n\xc3\xa7a\r\n")
    assert needs_smtputf8("á@a.test", ["b@b.test"], b"Subject: x\r\n\r\n")
    assert needs_smtputf8("a@a.test", ["bø@b.test"], b"Subject: x\r\n\r\n")
    assert needs_smtputf8("a@a.test", ["b@b.test"], "Subject: café\r\n\r\nx".encode())
    assert needs_smtputf8("a@a.test", ["b@b.test"], "Subject: café\n\nx".encode())
