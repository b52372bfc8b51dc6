"""Dates (rfc9051:9 date, date-time, zone) for SEARCH keys and APPEND.

``date`` gives a ``datetime.date``; ``date_time`` gives (seconds since the epoch, offset in
minutes east of UTC). No time zone database is needed: the zone is explicit in the grammar.
"""

from __future__ import annotations

import datetime as dt

from merpati.imap.parse.cursor import Cursor, ParseError

MONTHS = (b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN",
          b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC")  # fmt: skip


def _digits(cur: Cursor, lo: int, hi: int) -> int:
    buf = cur.buf
    start = i = cur.pos
    while i < len(buf) and i - start < hi and 0x30 <= buf[i] <= 0x39:
        i += 1
    if i - start < lo:
        raise ParseError("bad date")
    cur.pos = i
    return int(buf[start:i])


def _month(cur: Cursor) -> int:
    m = cur.take(3).upper()
    if m not in MONTHS:
        raise ParseError("bad month")
    return MONTHS.index(m) + 1


def _date_text(cur: Cursor) -> dt.date:
    day = _digits(cur, 1, 2)
    cur.expect(b"-")
    month = _month(cur)
    cur.expect(b"-")
    year = _digits(cur, 4, 4)
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ParseError("bad date") from None


def date(cur: Cursor) -> dt.date:
    if cur.accept(b'"'):
        value = _date_text(cur)
        cur.expect(b'"')
        return value
    return _date_text(cur)


def date_time(cur: Cursor) -> tuple[float, int]:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (day may be space-padded)."""
    cur.expect(b'"')
    if cur.peek() == b" ":
        cur.pos += 1
        day = _digits(cur, 1, 1)
    else:
        day = _digits(cur, 2, 2)
    cur.expect(b"-")
    month = _month(cur)
    cur.expect(b"-")
    year = _digits(cur, 4, 4)
    cur.sp()
    hh = _digits(cur, 2, 2)
    cur.expect(b":")
    mm = _digits(cur, 2, 2)
    cur.expect(b":")
    ss = _digits(cur, 2, 2)
    cur.sp()
    sign = cur.take(1)
    if sign not in (b"+", b"-"):
        raise ParseError("bad zone")
    zone = _digits(cur, 4, 4)
    cur.expect(b'"')
    offset = (zone // 100) * 60 + zone % 100
    if sign == b"-":
        offset = -offset
    try:
        tz = dt.timezone(dt.timedelta(minutes=offset))
        when = dt.datetime(year, month, day, hh, mm, ss, tzinfo=tz)
    except ValueError:
        raise ParseError("bad date-time") from None
    return when.timestamp(), offset


def format_date_time(ts: float, offset_minutes: int) -> bytes:
    """INTERNALDATE as rfc9051:9 date-time, quoted: ``"01-Jan-2024 10:00:00 +0000"``."""
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    when = dt.datetime.fromtimestamp(ts, tz)
    sign = "+" if offset_minutes >= 0 else "-"
    a = abs(offset_minutes)
    mon = MONTHS[when.month - 1].decode().capitalize()
    return (
        f'"{when.day:02d}-{mon}-{when.year:04d} {when.hour:02d}:{when.minute:02d}:'
        f'{when.second:02d} {sign}{a // 60:02d}{a % 60:02d}"'
    ).encode()
