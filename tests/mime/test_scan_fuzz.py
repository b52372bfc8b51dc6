"""Property test: the scanner never raises and its offsets always stay inside the message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from merpati.mime import serial
from merpati.mime.scan import scan
from merpati.mime.structure import MessageStructure

PIECES = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b'Content-Type: multipart/alternative; boundary="c"\r\n',
    b"Content-Type: message/rfc822\r\n",
    b'Content-Type: text/plain; charset="utf-8\r\n',
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Disposition: attachment; filename=x\r\n",
    b'From: "A" <a@b>, (c) d@e, g: h@i;\r\n',
    b"To: <@r:x@y\r\n",
    b"Subject: =?utf-8?B?w6k=?= =?x?Q?=ZZ?=\r\n",
    b" folded\r\n",
    b"\r\n",
    b"\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"--c\r\n",
    b"--c--\r\n",
    b"body \xff\xfe\x00\r\n",
    b"\r",
]


def _check(s: MessageStructure, n: int) -> None:
    stack = [s.body]
    while stack:
        p = stack.pop()
        assert 0 <= p.header_start <= p.body_start <= p.end <= n
        stack.extend(p.parts)
        if p.message is not None:
            stack.append(p.message.body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.binary(max_size=20), max_size=40))
def test_scan_structured_garbage(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    s = scan(data)
    _check(s, len(data))
    assert serial.loads(serial.dumps(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_scan_random_bytes(data: bytes) -> None:
    _check(scan(data), len(data))
