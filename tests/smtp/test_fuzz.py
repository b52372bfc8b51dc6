"""Property-based fuzzing of the SMTP session: any input, any split, never a crash.

Invariants: the session never raises; everything it sends is well-formed reply lines; the
output does not depend on how the input was split into reads.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_transcript import decide, run
from smtp_transcript import settings as smtp_settings

from merpati.smtp.events import Event, StartTLSRequest
from merpati.smtp.session import Session

FRAGMENTS = [
    b"EHLO a.example\r\n",
    b"HELO a\r\n",
    b"MAIL FROM:<s@a.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<s@a.example> BODY=BINARYMIME SMTPUTF8\r\n",
    b"RCPT TO:<r@b.example>\r\n",
    b"RCPT TO:<r@bad.example>\r\n",
    b"RCPT TO:<r@b.example> NOTIFY=NEVER ORCPT=rfc822;r@b.example\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN dXNlcg==\r\n",
    b"AGFAcHc=\r\n",
    b"*\r\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r",
    b"\n",
    b"\0",
    b"x" * 600,
    b"y" * 1200 + b"\r\n",
    "caf\u00e9\r\n".encode(),
    b"QUIT\r\n",
]

REPLY_LINE = re.compile(r"\d{3}[ -].*")

inputs = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=40).map(
    b"".join
)


def check_output(output: bytes) -> None:
    text = output.decode("utf-8", "replace")
    assert text.endswith("\r\n")
    for line in text.split("\r\n")[:-1]:
        assert REPLY_LINE.fullmatch(line), line


def no_tls(session: Session, event: Event) -> None:
    """A failed handshake closes the connection (a real upgrade depends on read timing)."""
    if isinstance(event, StartTLSRequest):
        session.close()
    else:
        decide(session, event)


@settings(max_examples=300, deadline=None)
@given(data=inputs, split=st.integers(min_value=1, max_value=64))
def test_any_input_any_split(data: bytes, split: int) -> None:
    cfg = smtp_settings(max_size=500, plaintext_auth=True)
    whole = run(data, cfg=cfg, decider=no_tls)
    check_output(whole.output)
    pieces = run(data, chunk=split, cfg=cfg, decider=no_tls)
    assert pieces.output == whole.output
    assert [m.data for m in pieces.messages] == [m.data for m in whole.messages]
    for m in whole.messages:
        assert len(m.data) <= 500


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000))
def test_random_bytes_in_every_state(data: bytes) -> None:
    for prefix in (b"", b"EHLO a\r\n", b"EHLO a\r\nMAIL FROM:<a@b.example>\r\n"):
        r = run(prefix + data, cfg=smtp_settings(max_size=500))
        check_output(r.output)
    session = Session(smtp_settings())
    session.receive_data(data)
    session.next_event()  # may be any event; must not raise
