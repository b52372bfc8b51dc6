"""Sans-I/O transcripts of the POP3 session: bytes in, bytes and actions out."""

from __future__ import annotations

import base64

import pytest
from pop3_driver import ACCOUNT, PASSWORD, Driver

from merpati.pop3.actions import NEED_DATA, Close, Send
from merpati.pop3.session import Pop3Session, SessionError, State

MSG1 = b"Subject: one\r\nFrom: a@example.org\r\n\r\nline 1\r\n.hidden dot\r\nline 3\r\n"
MSG2 = b"Subject: two\r\n\r\n\xe9t\xe9 8-bit \x00\x01 bytes\r\n"
MSG3 = b"Subject: three\r\n\r\nbody\r\n"


def drop() -> Driver:
    return Driver(messages={10: MSG1, 11: MSG2, 12: MSG3})


def plain(authzid: str, user: str, password: str) -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


def test_greeting() -> None:
    d = Driver()
    assert bytes(d.output) == b"+OK mail.example.org POP3 server ready\r\n"


def test_capa_before_and_after_stls() -> None:
    d = Driver(allow_plaintext_auth=False)
    out = d.feed(b"CAPA\r\n")
    assert out.startswith(b"+OK") and out.endswith(b"\r\n.\r\n")
    lines = out.split(b"\r\n")[1:-2]
    assert b"STLS" in lines
    assert b"USER" not in lines and not any(line.startswith(b"SASL") for line in lines)
    for cap in (b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"):
        assert cap in lines
    assert b"EXPIRE NEVER" in lines
    assert not any(line.startswith(b"LOGIN-DELAY") for line in lines)
    assert any(line.startswith(b"IMPLEMENTATION ") for line in lines)
    assert d.feed(b"STLS\r\n") == b"+OK begin TLS negotiation\r\n"
    assert d.tls_upgrades == 1
    lines = d.feed(b"CAPA\r\n").split(b"\r\n")
    assert b"STLS" not in lines
    assert b"USER" in lines and b"SASL PLAIN LOGIN" in lines


def test_credentials_refused_before_tls() -> None:
    d = Driver(allow_plaintext_auth=False, messages={1: MSG1})
    for cmd in (f"USER {ACCOUNT}", f"PASS {PASSWORD}", "AUTH PLAIN", "AUTH"):
        out = d.feed(cmd.encode() + b"\r\n")
        assert out.startswith(b"-ERR ") and b"STLS" in out
    assert d.verified == []
    assert d.session.state is State.AUTHORIZATION
    d.feed(b"STLS\r\n")
    assert d.login().endswith(b"+OK alice@example.org has 1 messages (%d octets)\r\n" % len(MSG1))


def test_stls_twice_and_unavailable() -> None:
    d = Driver(tls_active=True)
    assert d.feed(b"STLS\r\n").startswith(b"-ERR ")
    d = Driver(tls_available=False)
    assert d.feed(b"STLS\r\n").startswith(b"-ERR ")
    assert d.tls_upgrades == 0


def test_stls_discards_pipelined_plaintext() -> None:
    """rfc2595:4 commands injected after STLS in the same packet are never executed."""
    d = Driver(allow_plaintext_auth=False)
    out = d.feed(b"STLS\r\nUSER " + ACCOUNT.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert out == b"+OK begin TLS negotiation\r\n"
    assert d.verified == []
    assert d.feed(b"NOOP\r\n").startswith(b"-ERR")  # a fresh start in AUTHORIZATION


def test_full_transaction() -> None:
    d = drop()
    assert d.feed(f"USER {ACCOUNT}\r\n".encode()) == b"+OK send PASS\r\n"
    total = len(MSG1) + len(MSG2) + len(MSG3)
    assert d.feed(f"PASS {PASSWORD}\r\n".encode()) == (
        b"+OK alice@example.org has 3 messages (%d octets)\r\n" % total
    )
    assert d.verified == [(ACCOUNT, PASSWORD)]
    assert d.feed(b"STAT\r\n") == b"+OK 3 %d\r\n" % total
    assert d.feed(b"LIST\r\n") == (
        b"+OK 3 messages (%d octets)\r\n1 %d\r\n2 %d\r\n3 %d\r\n.\r\n"
        % (total, len(MSG1), len(MSG2), len(MSG3))
    )
    assert d.feed(b"list 2\r\n") == b"+OK 2 %d\r\n" % len(MSG2)
    assert d.feed(b"UIDL\r\n") == (
        b"+OK unique-id listing follows\r\n1 uidl-0010\r\n2 uidl-0011\r\n3 uidl-0012\r\n.\r\n"
    )
    assert d.feed(b"UIDL 3\r\n") == b"+OK 3 uidl-0012\r\n"
    retr = d.feed(b"RETR 1\r\n")
    assert retr == (
        b"+OK %d octets\r\n" % len(MSG1) + MSG1.replace(b"\r\n.hidden", b"\r\n..hidden") + b".\r\n"
    )
    assert d.marked_seen == [10]
    d.feed(b"RETR 1\r\n")
    assert d.marked_seen == [10], "\\Seen is set once"
    assert d.feed(b"RETR 2\r\n") == b"+OK %d octets\r\n" % len(MSG2) + MSG2 + b".\r\n"
    assert d.feed(b"TOP 1 0\r\n") == (
        b"+OK top of message follows\r\nSubject: one\r\nFrom: a@example.org\r\n\r\n.\r\n"
    )
    assert d.feed(b"TOP 1 2\r\n").endswith(b"\r\n\r\nline 1\r\n..hidden dot\r\n.\r\n")
    assert d.feed(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert d.feed(b"LIST 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert d.feed(b"RETR 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert d.feed(b"DELE 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert d.feed(b"STAT\r\n") == b"+OK 2 %d\r\n" % (len(MSG2) + len(MSG3))
    assert b"\r\n1 " not in d.feed(b"UIDL\r\n")
    assert d.feed(b"RSET\r\n") == b"+OK maildrop has 3 messages (%d octets)\r\n" % total
    assert d.feed(b"NOOP\r\n") == b"+OK\r\n"
    d.feed(b"DELE 3\r\nDELE 2\r\n")
    assert d.commits == []
    assert d.feed(b"QUIT\r\n") == b"+OK mail.example.org POP3 server signing off (2 deleted)\r\n"
    assert d.commits == [(11, 12)]
    assert d.closed == "quit"
    assert d.session.state is State.CLOSED
    assert set(d.messages) == {10}


def test_bytewise_equals_whole() -> None:
    script = (
        f"CAPA\r\nUSER {ACCOUNT}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL 2\r\n"
        "RETR 1\r\nTOP 3 1\r\nDELE 2\r\nBOGUS\r\nRSET\r\nDELE 1\r\nQUIT\r\n"
    ).encode()
    a, b = drop(), drop()
    out_a = a.feed(script)
    out_b = b.feed_bytewise(script)
    assert out_a == out_b
    assert a.commits == b.commits == [(10,)]
    assert out_a.count(b"-ERR") == 1


def test_bare_lf_commands_accepted() -> None:
    d = drop()
    d.feed(f"USER {ACCOUNT}\nPASS {PASSWORD}\n".encode())
    assert d.session.state is State.TRANSACTION
    assert d.feed(b"STAT\n").startswith(b"+OK 3 ")


def test_quit_without_deletions_commits_nothing() -> None:
    d = drop()
    d.login()
    assert d.feed(b"QUIT\r\n").startswith(b"+OK")
    assert d.commits == []
    assert d.closed == "quit"


def test_quit_in_authorization() -> None:
    d = drop()
    assert d.feed(b"QUIT\r\n").startswith(b"+OK")
    assert d.closed == "quit"
    assert d.verified == []


def test_hangup_deletes_nothing() -> None:
    d = drop()
    d.login()
    d.feed(b"DELE 1\r\nDELE 2\r\n")
    d.session.receive(b"")  # the transport sees EOF and simply stops
    assert d.commits == []
    assert len(d.messages) == 3


def test_idle_timeout_deletes_nothing() -> None:
    d = drop()
    d.login()
    d.feed(b"DELE 1\r\n")
    start = len(d.output)
    d.session.timed_out()
    d.pump()
    assert bytes(d.output[start:]).startswith(b"-ERR ")
    assert d.closed == "idle timeout"
    assert d.commits == []


def test_bad_password() -> None:
    d = drop()
    d.feed(f"USER {ACCOUNT}\r\n".encode())
    assert d.feed(b"PASS wrong\r\n") == b"-ERR [AUTH] invalid user name or password\r\n"
    assert d.session.state is State.AUTHORIZATION
    assert d.feed(b"PASS " + PASSWORD.encode() + b"\r\n") == b"-ERR USER first\r\n"


def test_pass_keeps_spaces() -> None:
    d = drop()
    d.feed(f"USER {ACCOUNT}\r\n".encode())
    d.feed(b"PASS " + PASSWORD.encode() + b"\r\n")
    assert d.verified == [(ACCOUNT, "correct horse")]
    assert d.session.state is State.TRANSACTION


def test_pass_must_follow_user() -> None:
    d = drop()
    d.feed(f"USER {ACCOUNT}\r\nCAPA\r\n".encode())
    assert d.feed(f"PASS {PASSWORD}\r\n".encode()) == b"-ERR USER first\r\n"
    assert d.verified == []


def test_in_use() -> None:
    d = Driver(messages={1: MSG1}, in_use=True)
    out = d.login()
    assert out.endswith(b"-ERR [IN-USE] maildrop is locked by another session\r\n")
    assert d.session.state is State.AUTHORIZATION
    assert d.session.errors == 0


def test_auth_plain_initial_response() -> None:
    d = drop()
    out = d.feed(b"AUTH PLAIN " + plain("", ACCOUNT, PASSWORD) + b"\r\n")
    assert out.startswith(b"+OK alice@example.org has 3 messages")
    assert d.session.state is State.TRANSACTION


def test_auth_plain_with_challenge_and_authzid() -> None:
    d = drop()
    assert d.feed(b"AUTH plain\r\n") == b"+ \r\n"
    out = d.feed(plain(ACCOUNT, ACCOUNT, PASSWORD) + b"\r\n")
    assert out.startswith(b"+OK ")


def test_auth_plain_other_authzid_refused() -> None:
    d = drop()
    out = d.feed(b"AUTH PLAIN " + plain("bob@example.org", ACCOUNT, PASSWORD) + b"\r\n")
    assert out == b"-ERR [AUTH] invalid user name or password\r\n"
    assert d.session.state is State.AUTHORIZATION


def test_auth_login() -> None:
    d = drop()
    assert d.feed(b"AUTH LOGIN\r\n") == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
    assert d.feed(base64.b64encode(ACCOUNT.encode()) + b"\r\n") == (
        b"+ " + base64.b64encode(b"Password:") + b"\r\n"
    )
    assert d.feed(base64.b64encode(PASSWORD.encode()) + b"\r\n").startswith(b"+OK ")


def test_auth_login_initial_response_wrong_password() -> None:
    d = drop()
    d.feed(b"AUTH LOGIN " + base64.b64encode(ACCOUNT.encode()) + b"\r\n")
    out = d.feed(base64.b64encode(b"nope") + b"\r\n")
    assert out == b"-ERR [AUTH] invalid user name or password\r\n"


def test_auth_cancel_malformed_unknown_and_listing() -> None:
    d = drop()
    d.feed(b"AUTH PLAIN\r\n")
    assert d.feed(b"*\r\n") == b"-ERR authentication cancelled\r\n"
    d.feed(b"AUTH PLAIN\r\n")
    assert d.feed(b"!!!notbase64\r\n") == b"-ERR malformed authentication response\r\n"
    assert d.feed(b"AUTH CRAM-MD5\r\n") == b"-ERR unsupported authentication mechanism\r\n"
    assert d.feed(b"AUTH\r\n") == b"+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    assert d.verified == []
    # A normal command afterwards is a command again, not a SASL response.
    assert d.feed(b"CAPA\r\n").startswith(b"+OK capability")


def test_auth_long_response_allowed_but_bounded() -> None:
    d = drop()
    d.feed(b"AUTH PLAIN\r\n")
    long_pw = "x" * 200
    out = d.feed(plain("", ACCOUNT, long_pw) + b"\r\n")  # > 255 octets: allowed here
    assert out == b"-ERR [AUTH] invalid user name or password\r\n"
    d.feed(b"AUTH PLAIN\r\n")
    assert d.feed(b"A" * 10_000 + b"\r\n") == b"-ERR authentication response too long\r\n"
    assert d.feed(b"NOOP\r\n").startswith(b"-ERR NOOP is not allowed")


def test_utf8_command_and_utf8_user() -> None:
    d = drop()
    assert d.feed(b"UTF8\r\n") == b"+OK UTF8 enabled\r\n"
    assert d.session.utf8
    d.feed("USER jörg@example.org\r\nPASS pw\r\n".encode())
    assert d.verified == [("jörg@example.org", "pw")]
    assert d.feed(b"USER \xff\xfe\r\n").startswith(b"-ERR ")


def test_state_table_enforced() -> None:
    d = drop()
    for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 1", b"UIDL"):
        assert d.feed(cmd + b"\r\n").startswith(b"-ERR ")
    d = drop()
    d.login()
    for cmd in (b"USER x", b"PASS y", b"AUTH PLAIN", b"STLS", b"UTF8"):
        assert d.feed(cmd + b"\r\n").startswith(b"-ERR "), cmd


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"FOO", b"-ERR unknown command\r\n"),
        (b"", b"-ERR unknown command\r\n"),
        (b"RETRIEVE 1", b"-ERR unknown command\r\n"),
        (b"RETR", b"-ERR RETR takes 1 argument\r\n"),
        (b"RETR 1 2", b"-ERR RETR takes 1 argument\r\n"),
        (b"RETR 0", b"-ERR invalid message number\r\n"),
        (b"RETR -1", b"-ERR invalid message number\r\n"),
        (b"RETR x", b"-ERR invalid message number\r\n"),
        (b"RETR 4", b"-ERR no such message\r\n"),
        (b"RETR 99999999999999", b"-ERR invalid message number\r\n"),
        (b"TOP 1", b"-ERR TOP takes 2 arguments\r\n"),
        (b"TOP 1 -1", b"-ERR invalid line count\r\n"),
        (b"LIST 1 2", b"-ERR LIST takes 0 to 1 arguments\r\n"),
        (b"DELE 7", b"-ERR no such message\r\n"),
        (b"STAT now", b"-ERR STAT takes 0 arguments\r\n"),
        (b"UIDL \x00", b"-ERR invalid characters in arguments\r\n"),
    ],
)
def test_bad_input_changes_nothing(line: bytes, reply: bytes) -> None:
    d = drop()
    d.login()
    assert d.feed(line + b"\r\n") == reply
    assert d.feed(b"QUIT\r\n").startswith(b"+OK")
    assert d.commits == []
    assert d.marked_seen == []


def test_line_too_long_then_in_step() -> None:
    d = drop()
    d.login()
    ok_line = b"UIDL " + b"1" * 0 + b"1"
    assert d.feed(ok_line + b"\r\n").startswith(b"+OK")
    # 253 octets + CRLF = 255: allowed (an unknown long argument, but framed fine)
    assert d.feed(b"LIST " + b"9" * 248 + b"\r\n") == b"-ERR invalid message number\r\n"
    assert d.feed(b"LIST " + b"9" * 249 + b"\r\n") == (
        b"-ERR line too long (the limit is 255 octets)\r\n"
    )
    out = d.feed_bytewise(b"DELE 1" + b" " * 5000 + b"\r\nSTAT\r\n")
    assert out.startswith(b"-ERR line too long")
    assert out.endswith(b"+OK 3 %d\r\n" % (len(MSG1) + len(MSG2) + len(MSG3)))


def test_too_many_errors_closes() -> None:
    d = Driver(max_errors=3)
    d.feed(b"A\r\nB\r\n")
    assert d.closed is None
    out = d.feed(b"C\r\nCAPA\r\n")
    assert out == b"-ERR too many errors, closing connection\r\n"
    assert d.closed == "too many errors"
    assert d.session.next_action() == Close("too many errors")


def test_failed_logins_count_as_errors() -> None:
    d = Driver(max_errors=3)
    for _ in range(3):
        d.feed(f"USER {ACCOUNT}\r\nPASS bad\r\n".encode())
    assert d.closed == "too many errors"
    assert len(d.verified) == 3


def test_message_expunged_elsewhere() -> None:
    d = Driver(messages={1: MSG1, 2: MSG2}, gone=frozenset({1}))
    d.login()
    assert d.feed(b"RETR 1\r\n") == b"-ERR message 1 no longer exists\r\n"
    assert d.feed(b"RETR 2\r\n").startswith(b"+OK")
    assert d.marked_seen == [2]


def test_already_seen_not_marked_again() -> None:
    d = Driver(messages={1: MSG1}, seen_flags=frozenset({1}))
    d.login()
    d.feed(b"RETR 1\r\n")
    assert d.marked_seen == []


def test_transport_contract_enforced() -> None:
    s = Pop3Session(allow_plaintext_auth=True)
    s.receive(b"USER a@b.c\r\nPASS x\r\n")
    assert s.next_action() != NEED_DATA  # +OK send PASS
    s.next_action()  # Verify
    with pytest.raises(SessionError):
        s.next_action()
    with pytest.raises(SessionError):
        s.tls_started()


def test_empty_maildrop() -> None:
    d = Driver()
    assert d.login().endswith(b"+OK alice@example.org has 0 messages (0 octets)\r\n")
    assert d.feed(b"LIST\r\n") == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert d.feed(b"UIDL\r\n") == b"+OK unique-id listing follows\r\n.\r\n"
    assert d.feed(b"RETR 1\r\n") == b"-ERR no such message\r\n"


def test_store_failures() -> None:
    d = Driver(messages={1: MSG1}, store_fails=True)
    assert d.login().endswith(b"-ERR [SYS/TEMP] cannot open the maildrop, try again later\r\n")
    assert d.session.state is State.AUTHORIZATION
    d = drop()
    d.login()
    d.feed(b"DELE 1\r\n")
    d.store_fails = True
    assert d.feed(b"QUIT\r\n") == b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    assert d.closed == "quit"
    assert len(d.messages) == 3


def test_partial_commit_reported() -> None:
    d = drop()
    d.login()
    d.feed(b"DELE 1\r\nDELE 2\r\nQUIT\r\n")
    assert d.commits == [(10, 11)]
    d2 = drop()
    d2.login()
    d2.feed(b"DELE 1\r\nDELE 2\r\n")
    d2.session.receive(b"QUIT\r\n")
    actions = []
    while True:
        a = d2.session.next_action()
        actions.append(a)
        if type(a).__name__ == "Commit":
            break
    d2.session.committed(1)  # one of the two could not be removed
    out = d2.session.next_action()
    assert out == Send(b"-ERR [SYS/TEMP] some deleted messages not removed\r\n")


def test_store_read_failure() -> None:
    d = Driver(messages={1: MSG1, 2: MSG2}, unreadable=frozenset({1}))
    d.login()
    assert d.feed(b"RETR 1\r\n") == (
        b"-ERR [SYS/TEMP] cannot read message 1 now, try again later\r\n"
    )
    assert d.feed(b"RETR 2\r\n").startswith(b"+OK")
    assert d.marked_seen == [2]


def test_login_delay_advertised_and_refused() -> None:
    s = Pop3Session(allow_plaintext_auth=True, login_delay=300)
    s.receive(b"CAPA\r\nUSER a@b.c\r\nPASS pw\r\n")
    capa = s.next_action()
    assert isinstance(capa, Send) and b"\r\nLOGIN-DELAY 300\r\n" in capa.data
    assert s.next_action() == Send(b"+OK send PASS\r\n")
    s.next_action()  # Verify
    s.verified("a@b.c")
    s.next_action()  # OpenMaildrop
    s.maildrop_too_soon()
    assert s.next_action() == Send(b"-ERR [LOGIN-DELAY] wait 300 seconds between logins\r\n")
    assert s.state is State.AUTHORIZATION
    assert Pop3Session(login_delay=0).login_delay == 0
