"""Folder snapshots on disk, so that the first SELECT of a large folder after a restart does
not read every message row from SQLite and count them again.

A snapshot file holds a folder's ``MessageInfo`` list (column by column, machine arrays) as of
one (UIDVALIDITY, HIGHESTMODSEQ), and the folder's counts at that point. It is a cache of the
index, like the in-memory snapshots: loaded only when its UIDVALIDITY is the folder's and its
MODSEQ is not above the folder's HIGHESTMODSEQ, then brought up to date from the index
incrementally (rows and tombstones with a higher MODSEQ), exactly as a warm snapshot is. A
file that is missing, unreadable, of another format or stale in that sense is ignored; it is
replaced atomically (write to a temporary name, rename), never fsynced: losing it costs one
slow SELECT. Only folders of at least ``MIN_MESSAGES`` get one (small ones load fast anyway).

Measured on 100,000 messages: reading the rows and building ``MessageInfo``s from SQLite
takes 300-450 ms, loading this file about 45 ms (columns as raw machine arrays, each turned
into a list by one C-level call; see ``save``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import marshal
import operator
import os
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from merpati.mailstore.api import MessageInfo

FORMAT = "merpati-snapshot-3"
MIN_MESSAGES = 2000
Counts = tuple[int, float, float, float]  # messages, unseen, recent, size (as the index sums)
_LEN = struct.Struct("<I")  # length of the marshalled header that follows
# The numeric columns, in file order, with their machine types (native byte order, recorded
# in the header); the flag-set column's type depends on how many distinct sets there are.
_COLUMNS = ("uid", "modseq", "flags", "internaldate", "internaldate_tz", "size")
_KNOWN_TYPES = frozenset("BHIiqd")
_TYPES = {"uid": "q", "modseq": "q", "internaldate": "d", "internaldate_tz": "i", "size": "q"}


def path_for(root: Path, folder_id: int) -> Path:
    return root / f"merpati-snapshot-{folder_id}"


def save(
    path: Path, uidvalidity: int, modseq: int, counts: Counts, infos: list[MessageInfo]
) -> None:
    """Write the snapshot (best effort: a failure leaves the previous file or none).

    Layout: a 4-byte length, a ``marshal``led header (format, byte order, UIDVALIDITY, MODSEQ,
    counts, message count, the distinct flag texts, each column's type and byte length), then
    the columns as raw machine arrays, then the UIDLs (file-name bases: no NUL) NUL-joined in
    UTF-8. Loading is then one read and one C-level ``tolist`` per column."""

    def column(field: int) -> Iterator[Any]:  # C-level (MessageInfo is a tuple)
        return map(operator.itemgetter(field), infos)

    flag_ids = {fs: n for n, fs in enumerate(dict.fromkeys(column(2)))}
    flag_type = "B" if len(flag_ids) <= 0xFF else "H" if len(flag_ids) <= 0xFFFF else "I"
    columns: list[array[Any]] = [
        array(_TYPES["uid"], column(0)),
        array(_TYPES["modseq"], column(1)),
        array(flag_type, map(flag_ids.__getitem__, column(2))),
        array(_TYPES["internaldate"], column(3)),
        array(_TYPES["internaldate_tz"], column(4)),
        array(_TYPES["size"], column(5)),
    ]
    raw = [c.tobytes() for c in columns]
    uidls = "\0".join(column(6)).encode("utf-8")
    header = marshal.dumps(
        (
            FORMAT,
            sys.byteorder,
            uidvalidity,
            modseq,
            tuple(counts),
            len(infos),
            [" ".join(sorted(fs)) for fs in flag_ids],
            [(c.typecode, len(r)) for c, r in zip(columns, raw, strict=True)],
            len(uidls),
        )
    )
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(b"".join([_LEN.pack(len(header)), header, *raw, uidls]))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


class _Head(NamedTuple):
    modseq: int
    counts: Counts
    messages: int
    flag_texts: list[str]
    specs: list[tuple[str, int]]  # each numeric column's type and byte length
    uidls_size: int


def _header(head: object, uidvalidity: int, highestmodseq: int) -> _Head | None:
    """The header's fields when it is of this format, machine and UIDVALIDITY, and not
    ahead of the index (``highestmodseq``)."""
    if not (isinstance(head, tuple) and len(head) == 9 and head[0] == FORMAT):
        return None
    _, order, valid, modseq, counts, count, texts, specs, uidls_size = head
    if order != sys.byteorder or valid != uidvalidity:
        return None
    if not isinstance(modseq, int) or modseq > highestmodseq:
        return None
    if not (isinstance(count, int) and isinstance(uidls_size, int)):
        return None
    if not (isinstance(texts, list) and isinstance(specs, list) and len(specs) == 6):
        return None
    return _Head(modseq, counts, count, texts, specs, uidls_size)


def _read(path: Path, whole: bool) -> tuple[object, bytes] | None:
    try:
        with open(path, "rb") as f:
            (n,) = _LEN.unpack(f.read(_LEN.size))
            head = marshal.loads(f.read(n))
            return head, f.read() if whole else b""
    except (OSError, EOFError, ValueError, TypeError, struct.error):
        return None


def load_counts(path: Path, uidvalidity: int, highestmodseq: int) -> Counts | None:
    """The folder counts, when the file is exactly as of ``highestmodseq``."""
    got = _read(path, False)
    head = _header(got[0], uidvalidity, highestmodseq) if got is not None else None
    if head is None or head.modseq != highestmodseq:
        return None
    return head.counts


def _columns(head: _Head, body: bytes) -> list[list[Any]] | None:
    """The numeric columns as lists (one C-level ``tolist`` each), or None when the body is
    not what the header says."""
    view = memoryview(body)
    out: list[list[Any]] = []
    at = 0
    for name, (typecode, size) in zip(_COLUMNS, head.specs, strict=True):
        if typecode != _TYPES.get(name, typecode) or typecode not in _KNOWN_TYPES:
            return None
        raw = array(typecode)
        raw.frombytes(view[at : at + size])  # ValueError unless whole items
        column = raw.tolist()
        if len(column) != head.messages:
            return None
        out.append(column)
        at += size
    return out if at + head.uidls_size == len(body) else None


def load(
    path: Path, uidvalidity: int, highestmodseq: int, flags: Callable[[str], frozenset[str]]
) -> tuple[int, dict[int, MessageInfo]] | None:
    """(the file's MODSEQ, UID -> MessageInfo in UID order), or None when it cannot be used.
    ``flags`` turns a flag text into the account's shared frozenset."""
    got = _read(path, True)
    head = _header(got[0], uidvalidity, highestmodseq) if got is not None else None
    if got is None or head is None:
        return None
    body = got[1]
    with gc_paused():
        try:
            columns = _columns(head, body)
            if columns is None:
                return None
            uids, modseqs, flag_of, dates, tzs, sizes = columns
            text = body[len(body) - head.uidls_size :].decode("utf-8")
            uidls = text.split("\0") if uids else []
            sets = [flags(t) for t in head.flag_texts]
            # One flag set for all (a folder all read, say): no lookup per message.
            one = len(sets) == 1 and not any(flag_of)
            flag_sets = (
                itertools.repeat(sets[0], len(uids)) if one else map(sets.__getitem__, flag_of)
            )
            rows = zip(uids, modseqs, flag_sets, dates, tzs, sizes, uidls, strict=True)
            # MessageInfo from each row without the named tuple's Python-level __new__: C only
            # (map over two iterables calls tuple.__new__ directly; ~20% faster than partial).
            infos = map(tuple.__new__, itertools.repeat(MessageInfo, len(uids)), rows)
            return head.modseq, dict(zip(uids, infos, strict=True))
        except (ValueError, TypeError, IndexError, AttributeError):
            return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Building 100,000 tuples makes the cyclic GC run dozens of times meanwhile (measured
    100 ms instead of 30 for 100,000 ``MessageInfo``s); they hold no cycles, so it waits.
    Process-wide for that moment; re-enabled only if it was enabled.

    On the way out the new objects are moved straight to the oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``, a list splice): otherwise the next young
    collection, then the middle one, would each traverse all of them, ~18 and ~14 ms for
    100,000 ``MessageInfo``s, on the command that built them. Nothing is left frozen: every
    object moved stays collectable by the next full collection (this defers, for whatever
    young objects the process had then, only the young collections' work)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()
