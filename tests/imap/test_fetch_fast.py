"""The metadata-only FETCH path (``UID FETCH 1:* (FLAGS)`` as clients sync): the same
responses as the general path, \\Recent for rev1 only, over several write chunks."""

from __future__ import annotations

import pytest
from sansio import Client, append

from merpati.imap.handlers import fetch as fetch_handler

A = "alice@example.org"


def test_flags_fast_path_rev1_and_rev2() -> None:
    c = Client().login()
    flags = [("\\Seen",), (), ("\\Flagged", "$Work"), ("\\Seen",)]
    for f in flags:
        append(c.store, A, b"Subject: x\r\n\r\nbody\r\n", flags=f)
    c.select()
    c.cmd("s STORE 4 -FLAGS.SILENT (\\Seen)")  # flags move after SELECT too
    append(c.store, A, b"Subject: new\r\n\r\nbody\r\n")  # recent for this session
    c.cmd("n NOOP")
    out = c.cmd("f UID FETCH 1:* (FLAGS)")
    lines = out.split(b"\r\n")
    assert lines[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen")
    assert b"* 3 FETCH (UID 3 FLAGS (\\Flagged $Work" in out
    assert b"* 5 FETCH (UID 5 FLAGS (\\Recent))" in out
    assert out.endswith(b"f OK UID FETCH completed\r\n")
    # The general path (with RFC822.SIZE it is not the (UID FLAGS) shape) agrees on flags.
    slow = c.cmd("g FETCH 1:* (FLAGS RFC822.SIZE)")
    fast = c.cmd("h FETCH 1:* (FLAGS)")
    for seq in range(1, 6):
        a = next(x for x in fast.split(b"\r\n") if x.startswith(b"* %d FETCH" % seq))
        b = next(x for x in slow.split(b"\r\n") if x.startswith(b"* %d FETCH" % seq))
        assert b.startswith(a[:-1]), (a, b)
    c.cmd("e ENABLE IMAP4rev2")
    out = c.cmd("f UID FETCH 1:* (UID FLAGS MODSEQ)")
    assert b"\\Recent" not in out
    assert b"* 5 FETCH (UID 5 FLAGS () MODSEQ (" in out
    assert out.count(b" FETCH (") == 5


def test_flags_fast_path_over_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_handler, "_FAST_CHUNK", 3)
    c = Client().login()
    for i in range(10):
        append(c.store, A, b"Subject: x\r\n\r\nbody\r\n", flags=("\\Seen",) if i % 2 else ())
    c.select()
    out = c.cmd("f UID FETCH 2:8 (FLAGS)")
    got = [x for x in out.split(b"\r\n") if x.startswith(b"* ")]
    assert [int(x.split()[1]) for x in got] == list(range(2, 9))
    assert all((b"\\Seen" in x) == (i % 2 == 0) for i, x in enumerate(got))


def test_flags_fast_path_sets_with_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_handler, "_FAST_CHUNK", 2)
    c = Client().login()
    for _ in range(10):
        append(c.store, A, b"Subject: x\r\n\r\nbody\r\n")
    c.select()
    assert b"s OK" in c.cmd("s STORE 2,6 +FLAGS.SILENT (\\Deleted)")
    assert b"x OK" in c.cmd("x EXPUNGE")  # UIDs 1 3 4 5 7 8 9 10 at 1..8

    def pairs(out: bytes) -> list[tuple[int, int]]:
        got = [x.split() for x in out.split(b"\r\n") if x.startswith(b"* ")]
        return [(int(x[1]), int(x[4])) for x in got]

    out = c.cmd("f UID FETCH 1:3,5:7,9,20:* (UID FLAGS)")
    assert pairs(out) == [(1, 1), (2, 3), (4, 5), (5, 7), (7, 9), (8, 10)]
    out = c.cmd("f FETCH 2:3,7:* (UID FLAGS)")
    assert pairs(out) == [(2, 3), (3, 4), (7, 9), (8, 10)]
    assert c.cmd("f FETCH 9 (FLAGS)").startswith(b"f BAD")
    c.cmd("v SEARCH RETURN (SAVE) UID 4,8")
    assert pairs(c.cmd("f FETCH $ (UID FLAGS)")) == [(3, 4), (6, 8)]
