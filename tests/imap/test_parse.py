"""Grammar tables: each rule with good and bad input, and the framer fed whole and byte by byte."""

from __future__ import annotations

import datetime as dt

import pytest

from merpati.imap import commands as c
from merpati.imap import mutf7
from merpati.imap.framing import CommandReady, Framer, NeedContinuation, Rejected
from merpati.imap.parse import Cursor, ParseError
from merpati.imap.parse.command import parse_command, parse_tag
from merpati.imap.parse.dates import date_time, format_date_time
from merpati.imap.parse.fetchatt import fetch_atts
from merpati.imap.parse.seqset import SequenceSet, sequence_set, uid_set
from merpati.imap.parse.strings import astring, literal, nstring, quoted


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'"abc"', b"abc"),
        (b'""', b""),
        (b'"a\\"b"', b'a"b'),
        (b'"a\\\\b"', b"a\\b"),
        ('"héllo"'.encode(), "héllo".encode()),
    ],
)
def test_quoted(raw: bytes, value: bytes) -> None:
    cur = Cursor(raw)
    assert quoted(cur) == value
    assert cur.at_end()


@pytest.mark.parametrize("raw", [b'"abc', b'"a\\b"', b'"a\rb"', b'"a\nb"', b"abc", b'"a\x00"'])
def test_quoted_bad(raw: bytes) -> None:
    with pytest.raises(ParseError):
        quoted(Cursor(raw))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"{3}\r\nabc", b"abc"),
        (b"{3+}\r\nabc", b"abc"),
        (b"{0}\r\n", b""),
        (b"{5}\r\na\r\nbc", b"a\r\nbc"),
    ],
)
def test_literal(raw: bytes, value: bytes) -> None:
    cur = Cursor(raw)
    assert literal(cur) == value
    assert cur.at_end()


@pytest.mark.parametrize(
    "raw", [b"{3}\r\nab", b"{x}\r\nabc", b"{3}abc", b"{3}\r\na\x00c", b"{-1}\r\n", b"{3++}\r\nabc"]
)
def test_literal_bad(raw: bytes) -> None:
    with pytest.raises(ParseError):
        literal(Cursor(raw))


def test_literal8_only_where_allowed() -> None:
    assert literal(Cursor(b"~{2}\r\n\x00\x01"), allow_binary=True) == b"\x00\x01"
    with pytest.raises(ParseError):
        literal(Cursor(b"~{2}\r\nab"))


def test_astring_and_nstring() -> None:
    assert astring(Cursor(b"INBOX]")) == b"INBOX]"  # ASTRING-CHAR includes "]"
    assert astring(Cursor(b'"a b"')) == b"a b"
    assert nstring(Cursor(b"NIL")) is None
    assert nstring(Cursor(b'"NIL"')) == b"NIL"
    for bad in (b"(x", b"", b"%", b"*"):
        with pytest.raises(ParseError):
            astring(Cursor(bad))


@pytest.mark.parametrize(
    ("raw", "largest", "ranges"),
    [
        (b"1", 10, [(1, 1)]),
        (b"1:3,5", 10, [(1, 3), (5, 5)]),
        (b"*", 10, [(10, 10)]),
        (b"5:*", 10, [(5, 10)]),
        (b"*:5", 10, [(5, 10)]),
        (b"20:*", 10, [(10, 20)]),  # rfc9051:9 n:* with n > * is *:n
        (b"3:1,2,9:7", 10, [(1, 3), (7, 9)]),
    ],
)
def test_sequence_set(raw: bytes, largest: int, ranges: list[tuple[int, int]]) -> None:
    cur = Cursor(raw)
    assert sequence_set(cur).resolve(largest) == ranges
    assert cur.at_end()


@pytest.mark.parametrize("raw", [b"0", b"1:0", b":3", b"a", b"1:", b"4294967296", b""])
def test_sequence_set_bad(raw: bytes) -> None:
    cur = Cursor(raw)
    with pytest.raises(ParseError):
        sequence_set(cur)
        cur.end()


def test_sequence_set_saved_and_roundtrip() -> None:
    assert sequence_set(Cursor(b"$")).saved
    s = sequence_set(Cursor(b"1:3,7,9:*"))
    assert bytes(s) == b"1:3,7,9:*"
    assert list(s.select([1, 2, 4, 7, 8, 12], 12)) == [1, 2, 7, 12]
    assert uid_set([1, 2, 3, 5, 7, 8]) == b"1:3,5,7:8"
    assert SequenceSet(((None, None),)).resolve(0) == [(0, 0)]


def test_date_time_roundtrip() -> None:
    ts, off = date_time(Cursor(b'" 1-Feb-2024 10:20:30 -0530"'))
    assert off == -330
    assert format_date_time(ts, off) == b'"01-Feb-2024 10:20:30 -0530"'
    for bad in (b'"31-Feb-2024 10:20:30 +0000"', b'"1-Foo-2024 10:20:30 +0000"', b"1-Feb-2024"):
        with pytest.raises(ParseError):
            date_time(Cursor(bad))


def test_fetch_attributes() -> None:
    atts = fetch_atts(Cursor(b"FAST"))
    assert [a.name for a in atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    (att,) = fetch_atts(Cursor(b'BODY.PEEK[1.2.HEADER.FIELDS.NOT (From "X-Y")]<10.20>'))
    assert (att.name, att.section, att.text, att.fields, att.partial, att.peek) == (
        "BODY",
        (1, 2),
        "HEADER.FIELDS.NOT",
        (b"From", b"X-Y"),
        (10, 20),
        True,
    )
    assert att.response_name() == b"BODY[1.2.HEADER.FIELDS.NOT (From X-Y)]<10>"
    assert not att.sets_seen
    (att,) = fetch_atts(Cursor(b"body[3.MIME]"))
    assert att.response_name() == b"BODY[3.MIME]" and att.sets_seen
    (att,) = fetch_atts(Cursor(b"BINARY.SIZE[2]"))
    assert att.response_name() == b"BINARY.SIZE[2]"
    for bad in (b"BODY[MIME]", b"BODY[1.]", b"BINARY[TEXT]", b"BODY[]<1>", b"FOO", b"(FLAGS",
                b"BODY[HEADER.FIELDS ()]", b"BODY[0]"):  # fmt: skip
        cur = Cursor(bad)
        with pytest.raises(ParseError):
            fetch_atts(cur)
            cur.end()


COMMANDS: list[tuple[bytes, type[c.Command], dict[str, object]]] = [
    (b"a1 NOOP", c.Command, {"name": "NOOP"}),
    (b"a1 noop", c.Command, {"name": "NOOP"}),
    (b'A LOGIN "user@x" {4}\r\np ss', c.Login, {"user": b"user@x", "password": b"p ss"}),
    (b"A AUTHENTICATE PLAIN AGFAYgBj", c.Authenticate, {"initial": b"AGFAYgBj"}),
    (b"A AUTHENTICATE PLAIN =", c.Authenticate, {"initial": b"="}),
    (b"A ENABLE IMAP4rev2 CONDSTORE", c.Enable, {"capabilities": ("IMAP4REV2", "CONDSTORE")}),
    (b'A ID ("name" "x" "version" NIL)', c.Id, {"params": ((b"name", b"x"), (b"version", None))}),
    (b"A SELECT INBOX (CONDSTORE)", c.Select, {"condstore": True}),
    (b"A EXAMINE \"a b\"", c.Select, {"name": "EXAMINE", "mailbox": b"a b"}),
    (b"A CREATE Foo (USE (\\Sent))", c.MailboxCommand, {"special_use": ("\\Sent",)}),
    (b"A RENAME a b", c.Rename, {"old": b"a", "new": b"b"}),
    (b'A LIST "" *', c.ListCommand, {"patterns": (b"*",), "extended": False}),
    (b'A LIST (SUBSCRIBED) "" (a% b) RETURN (CHILDREN)', c.ListCommand,
     {"select_opts": ("SUBSCRIBED",), "patterns": (b"a%", b"b"), "return_opts": ("CHILDREN",)}),
    (b"A STATUS INBOX (MESSAGES SIZE)", c.Status, {"atts": ("MESSAGES", "SIZE")}),
    (b"A APPEND x {2+}\r\nhi", c.Append, {"data": b"hi", "flags": ()}),
    (b"A APPEND x (\\Seen $Foo) ~{2}\r\n\x00i", c.Append, {"flags": ("\\Seen", "$Foo")}),
    (b"A APPEND x UTF8 (~{2}\r\nhi)", c.Append, {"data": b"hi", "binary": True}),
    (b"A SELECT M (QRESYNC (67890007 90060115194045000 41:211))", c.Select, {"condstore": False}),
    (b"A EXAMINE M (CONDSTORE QRESYNC (1 2 1:9 (1:3 4:6)))", c.Select, {"condstore": True}),
    (b"A UID FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)", c.Fetch, {"vanished": True}),
    (b"A UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5)", c.Fetch, {"uid": True, "changedsince": 5}),
    (b"A STORE 1 -FLAGS.SILENT \\Seen", c.Store, {"mode": "-", "silent": True}),
    (b"A UID STORE 1 (UNCHANGEDSINCE 3) +FLAGS (a b)", c.Store, {"unchangedsince": 3}),
    (b"A UID MOVE 1:2 Trash", c.CopyMove, {"name": "MOVE", "uid": True}),
    (b"A UID EXPUNGE 3", c.UidExpunge, {"name": "UID EXPUNGE"}),
    (b"A SEARCH CHARSET UTF-8 OR SEEN (UNSEEN FLAGGED)", c.Search, {"uid": False}),
    (b"A GETQUOTAROOT INBOX", c.MailboxCommand, {"name": "GETQUOTAROOT"}),
    (b'A GETQUOTA ""', c.GetQuota, {"root": b""}),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "cls", "fields"), COMMANDS)
def test_commands(raw: bytes, cls: type[c.Command], fields: dict[str, object]) -> None:
    cmd = parse_command(raw)
    assert type(cmd) is cls
    for k, v in fields.items():
        assert getattr(cmd, k) == v


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"A",
        b"A  NOOP",
        b"A NOOP ",
        b"A NOOP x",
        b"+ NOOP",
        b"A FOO",
        b"A UID NOOP",
        b"A LOGIN a",
        b"A SELECT",
        b"A FETCH 1",
        b"A FETCH x FLAGS",
        b"A STORE 1 FLAGS (\\Recent)",
        b"A STORE 1 XFLAGS \\Seen",
        b"A SEARCH",
        b"A SEARCH FOO",
        b"A SEARCH " + b"(" * 60 + b"ALL" + b")" * 60,
        b"A SEARCH SINCE 32-Jan-2020",
        b"A STATUS INBOX (FOO)",
        b"A APPEND INBOX",
        b"A ENABLE",
        b"A FETCH 1 FLAGS (CHANGEDSINCE 5 VANISHED)",
        b"A UID FETCH 1 FLAGS (VANISHED)",
        b"A SELECT M (QRESYNC (0 1))",
        b"A SELECT M (QRESYNC (1 2 1:9 (1:3 4:5)))",  # rfc7162:3.2.5 sets of unequal size
        b"A SELECT M (QRESYNC (1 2 1:9 (1:* 4:6)))",  # "*" is not allowed there
        b"A SELECT M (QRESYNC (1 2 $))",
        b"A SELECT M (FOO)",
    ],
)
def test_commands_bad(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command(raw)


def test_qresync_select_params() -> None:
    cmd = parse_command(b"A SELECT M (QRESYNC (7 90 1:9,20 (1,3:4 2,5:6)))")
    assert isinstance(cmd, c.Select) and cmd.qresync is not None
    q = cmd.qresync
    assert (q.uidvalidity, q.modseq) == (7, 90)
    assert q.known_uids is not None and bytes(q.known_uids) == b"1:9,20"
    assert q.seq_match is not None
    assert [bytes(x) for x in q.seq_match] == [b"1,3:4", b"2,5:6"]


def test_parse_tag() -> None:
    assert parse_tag(b"a1 FOO") == b"a1"
    assert parse_tag(b"+x FOO") is None
    assert parse_tag(b"(x FOO") is None


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("a&b", b"a&-b"),
        ("日本語", b"&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ],
)
def test_mutf7(name: str, wire: bytes) -> None:
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name


@pytest.mark.parametrize("wire", [b"&Jjo!", b"&U,BTFw-&ZeVnLIqe-", b"&AGE-", b"\xc3\xa9", b"&*-"])
def test_mutf7_bad(wire: bytes) -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(wire)


# -- framing -------------------------------------------------------------------------------
def _events(framer: Framer, data: bytes, one_byte: bool) -> list[object]:
    out: list[object] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if one_byte else [data]
    for chunk in chunks:
        framer.feed(chunk)
        while (ev := framer.next_event()) is not None:
            out.append(ev)
    return out


@pytest.mark.parametrize("one_byte", [False, True])
def test_framer(one_byte: bool) -> None:
    data = b"a NOOP\r\nb LOGIN {3}\r\nabc {2+}\r\nxy\r\nc APPEND INBOX {5}\r\n1\r\n34\r\n"
    evs = _events(Framer(1000, 1000), data, one_byte)
    assert evs == [
        CommandReady(b"a NOOP"),
        NeedContinuation(3),
        CommandReady(b"b LOGIN {3}\r\nabc {2+}\r\nxy"),
        NeedContinuation(5),
        CommandReady(b"c APPEND INBOX {5}\r\n1\r\n34"),
    ]
    for ev in evs:
        if isinstance(ev, CommandReady):
            parse_command(ev.data)


@pytest.mark.parametrize("one_byte", [False, True])
def test_framer_limits(one_byte: bool) -> None:
    # An over-size synchronising literal: refused before any "+", nothing buffered.
    evs = _events(Framer(100, 10), b"a APPEND x {11}\r\nb NOOP\r\n", one_byte)
    assert evs == [Rejected(b"a", "literal"), CommandReady(b"b NOOP")]
    # An over-size non-synchronising literal is skipped, with the rest of its command.
    evs = _events(Framer(100, 10), b"a APPEND x {11+}\r\n01234567890 more\r\nb NOOP\r\n", one_byte)
    assert evs == [Rejected(b"a", "literal"), CommandReady(b"b NOOP")]
    # A line over the limit is discarded up to its CRLF; the next command is intact.
    evs = _events(Framer(20, 10), b"a NOOP " + b"x" * 100 + b"\r\nb NOOP\r\n", one_byte)
    assert evs == [Rejected(b"a", "line"), CommandReady(b"b NOOP")]


def test_framer_never_buffers_beyond_limits() -> None:
    f = Framer(100, 50)
    f.feed(b"a APPEND x {40+}\r\n" + b"y" * 40 + b" {40+}\r\n")
    assert f.next_event() == Rejected(b"a", "literal")
    f.feed(b"z" * 10_000)  # skipped, never buffered
    assert f.next_event() is None
    assert f.buffered < 100
    f.feed(b"q" * 100_000)  # still the rest of the rejected line: dropped as it comes
    assert f.next_event() is None
    assert f.buffered < 100


def test_dates_module() -> None:
    from merpati.imap.parse.dates import date

    assert date(Cursor(b'"1-Jan-2020"')) == dt.date(2020, 1, 1)
