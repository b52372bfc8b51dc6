"""Table tests of the parse-once MIME scanner, including malformed input."""

from __future__ import annotations

import pytest

from merpati.mime import serial
from merpati.mime.scan import MAX_DEPTH, scan
from merpati.mime.structure import BodyPart, EnvelopeAddress, MessageStructure

SIMPLE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b'From: "Fred Foobar" <foobar@Blurdybloop.example>\r\n'
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)

MULTI = (
    b"From: a@example.org\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"first part\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n"
    b"\r\n"
    b"--inner\r\n"
    b"\r\n"
    b"plain default\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>html</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b'Content-Disposition: attachment; filename="fwd.eml"\r\n'
    b"\r\n"
    b"Subject: inner message\r\n"
    b"From: b@example.org\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def _slice(data: bytes, part: BodyPart) -> tuple[bytes, bytes]:
    return data[part.header_start : part.body_start], data[part.body_start : part.end]


def test_simple_envelope_and_body() -> None:
    s = scan(SIMPLE)
    env = s.envelope
    assert env.date == b"Mon, 7 Feb 1994 21:52:25 -0800"
    assert env.subject == b"afternoon meeting"
    assert env.from_ == (EnvelopeAddress(b"Fred Foobar", None, b"foobar", b"Blurdybloop.example"),)
    assert env.sender == env.from_ and env.reply_to == env.from_
    assert env.to == (EnvelopeAddress(None, None, b"mooch", b"owatagu.example"),)
    assert env.cc is None and env.bcc is None and env.in_reply_to is None
    assert env.message_id == b"<B27397-0100000@Blurdybloop.example>"
    body = s.body
    assert (body.type, body.subtype) == ("TEXT", "PLAIN")
    assert body.params == (("CHARSET", "US-ASCII"),)
    assert body.header_start == 0 and SIMPLE[body.body_start :].startswith(b"Hello Joe")
    assert body.end == len(SIMPLE) and body.lines == 1 and body.encoding == "7BIT"
    assert body.size == len(b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n")


def test_multipart_offsets_nested_and_rfc822() -> None:
    s = scan(MULTI)
    top = s.body
    assert (top.type, top.subtype) == ("multipart", "mixed")
    assert len(top.parts) == 3
    p1, p2, p3 = top.parts
    assert _slice(MULTI, p1) == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        b"first part",
    )
    assert p1.encoding == "QUOTED-PRINTABLE" and p1.params == (("charset", "utf-8"),)
    assert (p2.type, p2.subtype) == ("multipart", "alternative")
    a, b = p2.parts
    assert (a.type, a.subtype, a.params) == ("text", "plain", (("charset", "us-ascii"),))
    assert _slice(MULTI, a) == (b"\r\n", b"plain default")
    assert _slice(MULTI, b)[1] == b"<p>html</p>"
    assert p3.disposition == ("attachment", (("filename", "fwd.eml"),))
    assert p3.message is not None
    assert p3.message.envelope.subject == b"inner message"
    inner = p3.message.body
    assert MULTI[inner.body_start : inner.end] == b"inner body"
    assert (
        MULTI[p3.body_start : p3.end]
        == b"Subject: inner message\r\nFrom: b@example.org\r\n\r\ninner body"
    )
    assert p3.lines == 3


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"a@b.c", [(None, None, b"a", b"b.c")]),
        (b"Joe <j@x>", [(b"Joe", None, b"j", b"x")]),
        (b'"Doe, John" <jd@x>, k@y', [(b"Doe, John", None, b"jd", b"x"), (None, None, b"k", b"y")]),
        (b"j@x (Joe Comment)", [(b"Joe Comment", None, b"j", b"x")]),
        (b"<@r1,@r2:j@x>", [(None, b"@r1,@r2", b"j", b"x")]),
        (
            b"Team: a@x, b@y;",
            [
                (None, None, b"Team", None),
                (None, None, b"a", b"x"),
                (None, None, b"b", b"y"),
                (None, None, None, None),
            ],
        ),
        (
            b"undisclosed-recipients:;",
            [(None, None, b"undisclosed-recipients", None), (None, None, None, None)],
        ),
        (b"=?utf-8?q?J=C3=B6rg?= <j@x>", [(b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x")]),
        (b"nohost", [(None, None, b"nohost", b"")]),
        (b"", None),
        (b",,, ;", None),
        (b"broken <unterminated@x", [(b"broken", None, b"unterminated", b"x")]),
        (b"J\xc3\xb6rg <j@x>", [(b"J\xc3\xb6rg", None, b"j", b"x")]),
    ],
)
def test_address_lists(header: bytes, expected: list[tuple[bytes | None, ...]] | None) -> None:
    s = scan(b"To: " + header + b"\r\n\r\n")
    got = (
        None
        if s.envelope.to is None
        else [
            tuple(a.__getattribute__(f) for f in ("name", "adl", "mailbox", "host"))
            for a in s.envelope.to
        ]
    )
    assert got == expected


MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("no separator", b"Subject: x\r\nFrom: a@b"),
    ("only body", b"\r\njust a body"),
    ("lf endings", b"Subject: lf\n\nbody\n"),
    ("missing boundary param", b"Content-Type: multipart/mixed\r\n\r\nbody\r\n"),
    ("boundary never appears", b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n"),
    ("no close delimiter", b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nx\r\n"),
    ("empty part", b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n--zz--\r\n"),
    ("bad content-type", b"Content-Type: garbage\r\n\r\nx"),
    ("bad encoding", b"Content-Transfer-Encoding: x-weird\r\n\r\nx"),
    ("8-bit headers", b"Subject: caf\xe9 \xff\xfe\r\nFrom: \xc3\xa9 <e@x>\r\n\r\nbody"),
    ("bad encoded word", b"Subject: =?nosuch?B?!!!?= =?utf-8?Q?=ZZ?=\r\n\r\n"),
    ("continuation first", b" folded without field\r\nSubject: s\r\n\r\n"),
    ("nul bytes", b"Subject: a\x00b\r\n\r\n\x00\x00"),
    (
        "base64 rfc822",
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD",
    ),
    ("unterminated quote", b'Content-Type: text/plain; charset="utf-8\r\n\r\nx'),
    (
        "longer boundary lookalike",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--ab\r\n--a\r\n\r\nx\r\n--a--",
    ),
]


@pytest.mark.parametrize(("label", "data"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_never_raises(label: str, data: bytes) -> None:
    s = scan(data)
    assert 0 <= s.body.header_start <= s.body.body_start <= s.body.end <= len(data)
    _check_offsets(s, len(data))
    assert serial.loads(serial.dumps(s)) == s


def _check_offsets(s: MessageStructure, n: int) -> None:
    stack = [s.body]
    while stack:
        p = stack.pop()
        assert 0 <= p.header_start <= p.body_start <= p.end <= n
        if p.type.lower() == "multipart":
            assert p.parts, "a multipart always has at least one part"
        stack.extend(p.parts)
        if p.message is not None:
            stack.append(p.message.body)


def test_specific_malformed_shapes() -> None:
    assert scan(b"Subject: x\r\nFrom: a@b").body.body_start == len(b"Subject: x\r\nFrom: a@b")
    s = scan(b"Content-Type: multipart/mixed\r\n\r\nbody\r\n")
    assert (s.body.type, s.body.subtype) == ("text", "plain")
    s = scan(b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n")
    assert len(s.body.parts) == 1 and s.body.parts[0].end == len(
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nbody\r\n"
    )
    s = scan(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--ab\r\n--a\r\n\r\nx\r\n--a--")
    assert len(s.body.parts) == 1
    s = scan(b"Subject: caf\xe9\r\n\r\n")
    assert s.envelope.subject == b"caf\xe9" and dict(s.search_headers)["subject"] == "café"
    s = scan(b"Subject: =?iso-8859-1?q?caf=E9?= =?utf-8?b?IOKCrA==?=\r\n\r\n")
    assert dict(s.search_headers)["subject"] == "café €"


def test_deep_nesting_is_capped() -> None:
    data = (
        b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(1000)
        )
        + b"\r\nleaf\r\n"
    )
    s = scan(data)
    depth, part = 0, s.body
    while part.parts:
        part = part.parts[0]
        depth += 1
    assert depth <= MAX_DEPTH
    _check_offsets(s, len(data))
    nested_msgs = b"Content-Type: message/rfc822\r\n\r\n" * 1000 + b"\r\nend"
    _check_offsets(scan(nested_msgs), len(nested_msgs))


def test_digest_default_type_and_search_headers() -> None:
    data = (
        b"Subject: digest\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: one\r\n\r\nbody one\r\n--d--\r\n"
    )
    s = scan(data)
    part = s.body.parts[0]
    assert (part.type, part.subtype) == ("message", "rfc822")
    assert part.message is not None and part.message.envelope.subject == b"one"
    assert ("subject", "digest") in s.search_headers


def test_serial_round_trip() -> None:
    for data in (SIMPLE, MULTI):
        s = scan(data)
        blob = serial.loads(serial.dumps(s))
        assert blob == s
    with pytest.raises(ValueError):
        serial.loads(b"[99, []]")
