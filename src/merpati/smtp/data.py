"""Message body helpers for DATA and BDAT, all done in bulk on whole buffers.

- ``find_end``: where the rfc5321:4.1.1.4 end-of-data line is. Only CRLF "." CRLF ends DATA:
  a "." line ended by a bare LF or CR never does (the SMTP smuggling defence).
- ``unstuff``: rfc5321:4.5.2 transparency, removing the first "." of every line in one pass.
- ``check_body``: the content rules we enforce on a complete message: our bare-CR/LF policy
  (refused with 550 5.6.0, never normalised, see docs/smtp.md), NUL bytes, and the
  rfc5321:4.5.3.1.6 text line limit. BINARYMIME bodies (rfc3030:3) are exempt.

Nothing here keeps state; the session decides when to call what.
"""

from __future__ import annotations

from merpati.smtp import limits, replies
from merpati.smtp.replies import Reply

END_OF_DATA = b"\r\n.\r\n"


def find_end(buf: bytes | bytearray, start: int, at_body_start: bool) -> int:
    """Index in ``buf`` where the body's last CRLF begins (the terminator is then
    ``buf[i:i+5]``), -1 if not yet seen. ``at_body_start``: ``buf[0]`` is the first byte of
    the body, so an immediate ".\\r\\n" is an empty body (returns -2)."""
    if at_body_start and buf[:3] == b".\r\n":
        return -2
    return buf.find(END_OF_DATA, start)


def unstuff(raw: bytes) -> bytes:
    """Undo dot-stuffing (rfc5321:4.5.2) on a body of whole CRLF lines."""
    if b"\r\n." in raw:
        raw = raw.replace(b"\r\n.", b"\r\n")
    if raw[:1] == b".":
        raw = raw[1:]
    return raw


def has_bare_line_end(body: bytes) -> bool:
    """True if a CR or LF occurs other than as part of a CRLF pair."""
    crlf = body.count(b"\r\n")
    return body.count(b"\n") != crlf or body.count(b"\r") != crlf


def lines_within(body: bytes, limit: int) -> bool:
    """True if every line, its CRLF included, is at most ``limit`` octets (the last line
    counts as if ended). Jumps from line start to the last LF within ``limit`` octets of it,
    so a body of short lines costs a few ``rfind`` calls, not a list of its lines."""
    pos, size = 0, len(body)
    while size - pos > limit - 2:  # what is left could hold a line that is too long
        lf = body.rfind(b"\n", pos, pos + limit)  # a line starting at pos ends by then
        if lf < 0:
            return False
        pos = lf + 1
    return True


def check_body(body: bytes, binary: bool) -> Reply | None:
    """The reply refusing ``body`` under our content rules, or None if it is acceptable."""
    if binary:
        return None
    if has_bare_line_end(body):
        return replies.BARE_LINE_END
    if b"\0" in body:
        return replies.NUL_IN_DATA
    if not lines_within(body, limits.TEXT_LINE_MAX):
        return replies.TEXT_LINE_TOO_LONG
    return None
