"""Sequence sets (rfc9051:9 sequence-set): ``1,3:5,7:*`` and ``$`` (rfc5182 saved result).

``SequenceSet`` keeps the ranges as written; ``*`` is ``None`` until resolved against the
selected mailbox (rfc9051:9 "*" is the largest number in use; ``n:*`` with n > largest is
``largest:n``). Resolution never expands ``1:*`` into a list of every number on its own: callers
test membership or iterate over the numbers they have.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from merpati.imap.parse.atoms import MAX_NUMBER
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError

MAX_RANGES = 10_000  # more ranges than any client sends; bounds the work per command


@dataclass(frozen=True, slots=True)
class SequenceSet:
    ranges: tuple[tuple[int | None, int | None], ...]  # None is "*"
    saved: bool = False  # "$": the saved search result (rfc5182)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges (lo, hi) with lo <= hi and ``*`` replaced by ``largest``; sorted, merged."""
        out: list[tuple[int, int]] = []
        for a, b in self.ranges:
            x = largest if a is None else a
            y = largest if b is None else b
            if x > y:
                x, y = y, x
            out.append((x, y))
        out.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def select(self, candidates: Iterable[int], largest: int) -> Iterator[int]:
        """The numbers of ``candidates`` (ascending) that the set contains."""
        ranges = self.resolve(largest)
        i = 0
        for n in candidates:
            while i < len(ranges) and ranges[i][1] < n:
                i += 1
            if i == len(ranges):
                return
            if ranges[i][0] <= n:
                yield n

    def __bytes__(self) -> bytes:
        if self.saved:
            return b"$"
        parts = []
        for a, b in self.ranges:
            sa = b"*" if a is None else str(a).encode()
            if a == b:
                parts.append(sa)
            else:
                parts.append(sa + b":" + (b"*" if b is None else str(b).encode()))
        return b",".join(parts)


def _seq_number(cur: Cursor) -> int | None:
    if cur.accept(b"*"):
        return None
    buf = cur.buf
    start = i = cur.pos
    while i < len(buf) and 0x30 <= buf[i] <= 0x39:
        i += 1
    if i == start or i - start > 10:
        raise ParseError("bad sequence set")
    value = int(buf[start:i])
    if value == 0 or value > MAX_NUMBER:
        raise ParseError("bad sequence set")
    cur.pos = i
    return value


def sequence_set(cur: Cursor) -> SequenceSet:
    if cur.accept(b"$"):
        return SequenceSet((), saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    while True:
        a = _seq_number(cur)
        b = _seq_number(cur) if cur.accept(b":") else a
        ranges.append((a, b))
        if len(ranges) > MAX_RANGES:
            raise LimitExceeded("sequence set too long")
        if not cur.accept(b","):
            break
    return SequenceSet(tuple(ranges))


def uid_set(uids: Iterable[int]) -> bytes:
    """Compress ascending UIDs into a sequence-set string (for COPYUID, ESEARCH ALL)."""
    parts: list[bytes] = []
    start = prev = -2
    for u in uids:
        if u == prev + 1:
            prev = u
            continue
        if start >= 0:
            parts.append(str(start).encode() if start == prev else b"%d:%d" % (start, prev))
        start = prev = u
    if start >= 0:
        parts.append(str(start).encode() if start == prev else b"%d:%d" % (start, prev))
    return b",".join(parts)
