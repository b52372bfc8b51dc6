"""QRESYNC (rfc7162:3.2.5): what VANISHED (EARLIER) reports with and without expunge history,
the sequence-match data, and the session transcripts over a store that forgets tombstones."""

from __future__ import annotations

import re

from sansio import Client, append

from merpati.imap.parse.seqset import SequenceSet
from merpati.imap.qresync import matched_uid, ranges_bytes, vanished_earlier
from merpati.mailstore.api import Changes
from merpati.mailstore.memory import MemoryMailStore

A = "alice@example.org"
MSG = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"


def _set(*ranges: tuple[int, int]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


def test_vanished_exact_from_history() -> None:
    changes = Changes(20, (), (3, 4, 9, 12))
    assert vanished_earlier(changes, 5, None, [1, 2, 5], 13) == [(3, 4), (9, 9), (12, 12)]
    assert vanished_earlier(changes, 5, _set((1, 10)), [1, 2, 5], 13) == [(3, 4), (9, 9)]
    assert vanished_earlier(changes, 5, None, [1, 2, 5], 13, above=4) == [(9, 9), (12, 12)]
    assert vanished_earlier(Changes(1, (), ()), 0, None, [], 1) == []


def test_vanished_without_history_compares_uids() -> None:
    # history starts at MODSEQ 10; the client's MODSEQ 5 is older: every UID below UIDNEXT
    # that the client may know and that is not here is reported
    changes = Changes(20, (), (12,), expunge_history_from=10)
    present = [2, 5, 6, 11]
    assert vanished_earlier(changes, 5, None, present, 13) == [(1, 1), (3, 4), (7, 10), (12, 12)]
    assert vanished_earlier(changes, 5, _set((4, 8)), present, 13) == [(4, 4), (7, 8)]
    assert vanished_earlier(changes, 5, _set((1, None)), present, 13, above=6) == [
        (7, 10),
        (12, 12),
    ]
    assert ranges_bytes([(1, 1), (3, 4)]) == b"1,3:4"


def test_matched_uid() -> None:
    here = {2: 1, 5: 2, 6: 3, 11: 4}  # uid -> message number now
    # the client saw 1..6 as 1..6: UID 2 is now number 1, not 2; UID 6 is number 3, not 6
    assert matched_uid((_set((1, 2)), _set((1, 2))), here.get) == 0
    # numbers that still agree: (1, 2) and (3, 6) -> nothing at or below UID 6 vanished since
    assert matched_uid((_set((1, 1), (3, 3)), _set((2, 2), (6, 6))), here.get) == 6
    assert matched_uid((_set((1, 1), (9, 9)), _set((2, 2), (11, 11))), here.get) == 2


def _uv_modseq(out: bytes) -> tuple[int, int]:
    uv = int(re.search(rb"UIDVALIDITY (\d+)", out).group(1))  # type: ignore[union-attr]
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", out).group(1))  # type: ignore[union-attr]
    return uv, hms


def test_select_qresync_with_forgotten_tombstones_uses_seq_match_data() -> None:
    """rfc7162:3.2.5.2: the store keeps one tombstone per folder; the client's MODSEQ is older
    than that, so the server compares UIDs and the sequence-match data cuts the answer."""
    store = MemoryMailStore(max_tombstones=1)
    for _ in range(10):
        append(store, A, MSG)
    c = Client(store).login()
    c.cmd("e ENABLE QRESYNC")
    uv, modseq = _uv_modseq(c.select())
    # the client knew UIDs 1..10 as numbers 1..10; another session expunges 3, 4 and 8
    other = Client(store).login()
    other.select()
    other.cmd("a STORE 3:4,8 +FLAGS.SILENT (\\Deleted)")
    other.cmd("b EXPUNGE")
    other.cmd("c UID STORE 9 +FLAGS.SILENT (\\Flagged)")
    c.cmd("u UNSELECT")
    out = c.cmd(f"s SELECT INBOX (QRESYNC ({uv} {modseq} 1:10))")
    # no history back to MODSEQ: every known UID that is gone (3, 4, 8)
    assert b"* VANISHED (EARLIER) 3:4,8\r\n" in out
    assert re.search(rb"\* 6 FETCH \(UID 9 FLAGS \(\\Flagged[^)]*\) MODSEQ \(\d+\)\)\r\n", out)
    assert out.count(b"FETCH") == 1 and out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    # sequence-match data: UID 2 is still number 2 -> nothing at or below 2 vanished;
    # UID 10 was number 10, is number 7 now -> no proof above 2
    out = c.cmd(f"t SELECT INBOX (QRESYNC ({uv} {modseq} 1:10 (2,10 2,10)))")
    assert b"* VANISHED (EARLIER) 3:4,8\r\n" in out
    # a client that already knew about 3:4 (its numbers for 5 and 6 are 3 and 4): from UID 6 up
    out = c.cmd(f"v EXAMINE INBOX (QRESYNC ({uv} {modseq} 1:10 (3:4 5:6)))")
    assert b"* VANISHED (EARLIER) 8\r\n" in out
    # unequal sets are a syntax error
    assert c.cmd(f"w SELECT INBOX (QRESYNC ({uv} {modseq} 1:10 (1:2 1)))").startswith(b"w BAD")
    # UID FETCH ... (CHANGEDSINCE VANISHED) falls back the same way
    c.select()
    out = c.cmd(f"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert out.startswith(b"* VANISHED (EARLIER) 3:4,8\r\n")
    assert b"UID 9 FLAGS (\\Flagged" in out and out.count(b"FETCH (") == 1


def test_select_qresync_exact_history_and_uidvalidity_mismatch() -> None:
    store = MemoryMailStore()
    for _ in range(4):
        append(store, A, MSG)
    c = Client(store).login()
    out = c.cmd("e ENABLE QRESYNC")
    assert out == b"* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n"
    assert c.session.condstore  # rfc7162:3.2.3 QRESYNC implies CONDSTORE
    uv, modseq = _uv_modseq(c.select())
    c.cmd("a STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.cmd("b EXPUNGE")
    c.cmd("u UNSELECT")
    # the tombstones are exact: only UID 2, whatever the sequence-match data says
    out = c.cmd(f"s SELECT INBOX (QRESYNC ({uv} {modseq} 1:4 (1:4 1:4)))")
    assert b"* VANISHED (EARLIER) 2\r\n" in out
    # another UIDVALIDITY: a plain SELECT, no VANISHED, no FETCH
    out = c.cmd(f"t SELECT INBOX (QRESYNC ({uv + 1} {modseq}))")
    assert b"VANISHED" not in out and b"FETCH" not in out and b"t OK" in out
