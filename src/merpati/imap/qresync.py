"""What ``VANISHED (EARLIER)`` reports (rfc7162:3.2.5.1 SELECT/EXAMINE QRESYNC, rfc7162:3.2.6
UID FETCH ... VANISHED), with or without the store's expunge history.

When the store still has a tombstone for every expunge after the client's MODSEQ
(``Changes.expunge_history_from`` <= MODSEQ) the answer is exact: the tombstoned UIDs the client
may know. Otherwise the server cannot tell what the client saw, and reports every UID of the
client's known UIDs (all UIDs below UIDNEXT when it sent none) that is not in the mailbox now
(the client ignores UIDs it never had). The sequence-match data of SELECT (rfc7162:3.2.5.2)
narrows that: a pair (message number, UID) whose number is still the same proves that nothing
at or below that UID was expunged since the client last looked (messages only ever leave and
new ones get higher UIDs), so only higher UIDs are reported.

Pure functions over sorted UID lists; no store, no session.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from merpati.imap.parse.seqset import SequenceSet
from merpati.mailstore.api import Changes

# Pairs of sequence-match data checked at most (a client sends a sample, not every message);
# past it the data is ignored, which only makes the answer longer, never wrong.
MAX_MATCH_PAIRS = 100_000


def _numbers(ranges: Sequence[tuple[int | None, int | None]]) -> Iterator[int]:
    """The numbers of a set as written (rfc7162:3.2.5.2 pairs are matched in that order)."""
    for a, b in ranges:
        lo, hi = a or 0, b or 0
        step = 1 if hi >= lo else -1
        yield from range(lo, hi + step, step)


def matched_uid(
    seq_match: tuple[SequenceSet, SequenceSet], seq_of: Callable[[int], int | None]
) -> int:
    """The highest UID of the client's (message number, UID) pairs that still has the same
    message number here; 0 when none does. The parser checked that both sets have as many
    numbers."""
    seqs, uids = seq_match
    best = 0
    pairs = zip(_numbers(seqs.ranges), _numbers(uids.ranges), strict=True)
    for i, (msn, uid) in enumerate(pairs):
        if i >= MAX_MATCH_PAIRS:
            break
        if uid > best and seq_of(uid) == msn:
            best = uid
    return best


def _missing(lo: int, hi: int, present: Sequence[int]) -> Iterator[tuple[int, int]]:
    """The ranges of [lo, hi] not in ``present`` (sorted)."""
    i = bisect.bisect_left(present, lo)
    cur = lo
    while cur <= hi:
        if i < len(present) and present[i] <= hi:
            if present[i] > cur:
                yield cur, present[i] - 1
            cur = present[i] + 1
            i += 1
        else:
            yield cur, hi
            return


def vanished_earlier(
    changes: Changes,
    modseq: int,
    known: SequenceSet | None,
    present: Sequence[int],
    uidnext: int,
    above: int = 0,
) -> list[tuple[int, int]]:
    """UID ranges for ``VANISHED (EARLIER)``: ``changes`` is ``changes_since(modseq)``,
    ``known`` the client's UIDs (None: all), ``present`` the UIDs in the mailbox (sorted),
    ``above`` the UID proved by the sequence-match data (nothing at or below it vanished)."""
    largest = uidnext - 1
    if largest < 1:
        return []
    ranges = known.resolve(largest) if known is not None else [(1, largest)]
    out: list[tuple[int, int]] = []
    if modseq >= changes.expunge_history_from:
        gone = [u for u in changes.expunged if u > above]
        for u in known.select(gone, largest) if known is not None else gone:
            if out and out[-1][1] == u - 1:
                out[-1] = (out[-1][0], u)
            else:
                out.append((u, u))
        return out
    for lo, hi in ranges:
        lo, hi = max(lo, above + 1), min(hi, largest)
        if lo <= hi:
            for r in _missing(lo, hi, present):
                if out and out[-1][1] == r[0] - 1:
                    out[-1] = (out[-1][0], r[1])
                else:
                    out.append(r)
    return out


def ranges_bytes(ranges: Sequence[tuple[int, int]]) -> bytes:
    return b",".join(b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi) for lo, hi in ranges)
