"""Parser, framing and reply formatting of the POP3 core, plus a property-based fuzz test."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pop3_driver import ACCOUNT, PASSWORD, Driver

from merpati.pop3.commands import Command, CommandError, parse_command
from merpati.pop3.framing import LineReader, LineTooLong
from merpati.pop3.replies import RespCode, err, message_response, ok, top_of_message
from merpati.pop3.session import State


def unstuff(body: bytes) -> bytes:
    """What a client does: strip the terminator and one leading dot per line."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n"
    body = body[:-3]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


# ---- framing ---------------------------------------------------------------------------


def test_lines_split_crlf_and_lf() -> None:
    r = LineReader()
    r.feed(b"ONE\r\nTWO\nTHR")
    assert r.next_line() == b"ONE"
    assert r.next_line() == b"TWO"
    assert r.next_line() is None
    r.feed(b"EE\r\n")
    assert r.next_line() == b"THREE"
    assert r.next_line() is None


def test_line_limit_exact() -> None:
    r = LineReader(limit=10)
    r.feed(b"12345678\r\n")  # 10 octets with CRLF: allowed
    assert r.next_line() == b"12345678"
    r.feed(b"123456789\r\nOK\r\n")
    assert r.next_line() == LineTooLong(10)
    assert r.next_line() == b"OK"


def test_long_line_never_buffered() -> None:
    r = LineReader(limit=255)
    for _ in range(100):
        r.feed(b"x" * 1000)
        assert r.next_line() is None
        assert r.buffered <= 255
    r.feed(b"tail\r\nNEXT\r\n")
    assert r.next_line() == LineTooLong(255)
    assert r.next_line() == b"NEXT"


def test_clear_drops_everything() -> None:
    r = LineReader()
    r.feed(b"A\r\nB\r\n")
    r.clear()
    assert r.next_line() is None


# ---- commands --------------------------------------------------------------------------


def test_parse_roundtrip() -> None:
    cmd = parse_command(b"top 3 10")
    assert cmd == Command("TOP", (b"3", b"10"))
    assert bytes(cmd) == b"TOP 3 10\r\n"
    assert parse_command(b"PASS  two  spaces ").args == (b" two  spaces ",)
    assert parse_command(b"LIST ").args == ()


def test_unknown_flagged() -> None:
    with pytest.raises(CommandError) as info:
        parse_command(b"APOP x y")
    assert info.value.unknown
    with pytest.raises(CommandError) as info:
        parse_command(b"RETR")
    assert not info.value.unknown


# ---- replies ---------------------------------------------------------------------------


def test_status_lines() -> None:
    assert ok() == b"+OK\r\n"
    assert ok("fine") == b"+OK fine\r\n"
    assert err("locked", RespCode.IN_USE) == b"-ERR [IN-USE] locked\r\n"
    assert err("x\r\ny") == b"-ERR x  y\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b".",
        b".\r\n",
        b"..\r\n.\r\n",
        b"a\r\n.\r\nb",
        b"Subject: x\r\n\r\n.leading\r\n..two\r\nend",
        b"bare\nlf\n.dot\n",
        b"\x00\xff\x80 binary \r\n\r\n\x1b[0m",
    ],
)
def test_retr_stuffing_roundtrip(data: bytes) -> None:
    out = message_response(data)
    first, _, body = out.partition(b"\r\n")
    assert first == b"+OK %d octets" % len(data)
    assert b"\r\n.\r\n" not in body[:-5] or body.endswith(b"\r\n.\r\n")
    restored = unstuff(body)
    expected = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"  # the last line gets a line end
    assert restored == expected
    # the terminator appears only at the end
    assert body.find(b"\r\n.\r\n") in (-1, len(body) - 5)


def test_retr_crlf_message_is_byte_exact() -> None:
    data = b"Subject: s\r\n\r\n\xe9\xe8 caf\xc3\xa9\r\n\tindent\r\n"
    assert message_response(data) == b"+OK %d octets\r\n" % len(data) + data + b".\r\n"


@pytest.mark.parametrize(
    "lines, body",
    [
        (0, b""),
        (1, b"b1\r\n"),
        (2, b"b1\r\n..b2\r\n"),
        (3, b"b1\r\n..b2\r\nb3\r\n"),
        (4, b"b1\r\n..b2\r\nb3\r\n"),
        (1000, b"b1\r\n..b2\r\nb3\r\n"),
    ],
)
def test_top(lines: int, body: bytes) -> None:
    data = b"H: 1\r\nH2: 2\r\n\r\nb1\r\n.b2\r\nb3"
    out = top_of_message(data, lines)
    assert out == b"+OK top of message follows\r\nH: 1\r\nH2: 2\r\n\r\n" + body + b".\r\n"


def test_top_header_only_and_no_header() -> None:
    assert top_of_message(b"H: 1\r\n", 5).endswith(b"\r\nH: 1\r\n.\r\n")
    assert top_of_message(b"\r\nbody\r\nmore\r\n", 1).endswith(b"follows\r\n\r\nbody\r\n.\r\n")


# ---- fuzz ------------------------------------------------------------------------------

_WORDS = [
    b"USER " + ACCOUNT.encode(),
    b"PASS " + PASSWORD.encode(),
    b"PASS bad",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b"*",
    b"CAPA",
    b"STLS",
    b"UTF8",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"RETR 1",
    b"RETR 2",
    b"TOP 2 1",
    b"DELE 1",
    b"DELE 2",
    b"RSET",
    b"NOOP",
    b"UIDL",
    b"UIDL 9",
    b"QUIT",
]

_LINE = st.one_of(
    st.sampled_from(_WORDS),
    st.binary(max_size=300),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_LINE, max_size=25),
    chunk=st.integers(min_value=1, max_value=64),
    plaintext=st.booleans(),
)
def test_fuzz_session(lines: list[bytes], chunk: int, plaintext: bool) -> None:
    """Any input: no exception, every reply well-formed, nothing deleted without QUIT."""
    d = Driver(messages={1: b"a\r\n", 2: b"S: x\r\n\r\n.b\r\n"}, allow_plaintext_auth=plaintext)
    stream = b"".join(line.replace(b"\n", b"") + b"\r\n" for line in lines)
    for i in range(0, len(stream), chunk):
        if d.closed:
            break
        d.feed(stream[i : i + chunk])
    out = bytes(d.output)
    assert out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert len(line) < 1000
    for status in re.findall(rb"(?:^|\r\n)([+-][A-Z]*)", out):
        assert status in (b"+OK", b"-ERR", b"+")
    if d.commits:
        assert any(line.strip().upper() == b"QUIT" for line in lines)
        assert d.closed == "quit"
    if d.session.state is State.TRANSACTION:
        assert d.verified
    # Framing does not depend on how the bytes were split (except around STLS, where what
    # arrived together with the command is dropped on purpose).
    if any(line.strip().upper().startswith(b"STLS") for line in lines):
        return
    whole = Driver(messages={1: b"a\r\n", 2: b"S: x\r\n\r\n.b\r\n"}, allow_plaintext_auth=plaintext)
    whole.feed(stream)
    assert bytes(whole.output) == out
    assert whole.commits == d.commits
