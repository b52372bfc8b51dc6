"""The intake journal: append-only segment files where accepted messages become durable with
one ``fdatasync`` per group of messages, as Postfix's queue file makes them durable before its
``250`` (docs/smtp.md, "Intake journal", has the reasons and the figures).

A segment ``intake/<first-seq>.log`` is a run of records::

    b"MJ" kind:u8 0:u8 seq:u64 length:u32 crc32:u32 payload[length]

``crc32`` covers kind, seq, length and payload. ``MSG`` records carry one message: a JSON
header (the envelope) and the message bytes. ``DONE`` records carry the seqs of messages that
are now durable in their mailboxes or in the outbound queue. On start-up every segment is read
(``scan``): a message whose seq has no ``DONE`` is delivered again. A record that is cut short
or fails its CRC ends its segment: that is the tail a crash left half-written, and no reply was
ever sent for it (the reply waits for the fsync that covers the whole record).

Everything here is blocking file I/O, run in the intake's one writer thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merpati.durable import fsync_dir

MAGIC = b"MJ"
KIND_MSG = 1
KIND_DONE = 2
_HEAD = struct.Struct(">2sBBQII")  # magic, kind, pad, seq, length, crc
HEADER_SIZE = _HEAD.size
PREALLOCATE = 1024 * 1024  # zeros written ahead of the records (SegmentWriter)
_U32 = struct.Struct(">I")
SEGMENT_SUFFIX = ".log"


class JournalError(Exception):
    """A record that is not ours (not a torn tail): the segment is corrupt from here."""


def _crc(kind: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">BQI", kind, seq, len(payload))))


def encode(kind: int, seq: int, payload: bytes) -> bytes:
    return _HEAD.pack(MAGIC, kind, 0, seq, len(payload), _crc(kind, seq, payload)) + payload


def msg_payload(header: dict[str, Any], message: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return _U32.pack(len(head)) + head + message


def split_msg(payload: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = _U32.unpack_from(payload)
    header = json.loads(payload[4 : 4 + n])
    if not isinstance(header, dict):
        raise JournalError("message header is not an object")
    return header, payload[4 + n :]


def done_payload(seqs: list[int]) -> bytes:
    return struct.pack(f">{len(seqs)}Q", *seqs)


@dataclass(slots=True)
class MsgRef:
    seq: int
    segment: Path
    offset: int  # of the payload
    length: int


@dataclass(slots=True)
class ScanResult:
    """What the segments on disk hold: messages not yet done, by seq, and the next seq."""

    pending: dict[int, MsgRef] = field(default_factory=dict)
    segments: list[Path] = field(default_factory=list)  # oldest first
    next_seq: int = 1
    torn: list[Path] = field(default_factory=list)  # segments that ended in a partial record


def segments(directory: Path) -> list[Path]:
    """Segment files oldest first (named by their first seq, zero-padded)."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.name.endswith(SEGMENT_SUFFIX) and p.name[: -len(SEGMENT_SUFFIX)].isdigit()
    )


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def scan(directory: Path) -> ScanResult:
    result = ScanResult()
    done: set[int] = set()
    for path in segments(directory):
        result.segments.append(path)
        # Named by a seq no record of it may reuse, even when the segment is empty.
        result.next_seq = max(result.next_seq, int(path.name.split(".")[0]) + 1)
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            if data[pos : pos + 2] == b"\0\0" and not data[pos:].strip(b"\0"):
                break  # the zeros written ahead (SegmentWriter): the end, not a torn tail
            if len(data) - pos < _HEAD.size:
                result.torn.append(path)
                break
            magic, kind, _, seq, length, crc = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            payload = data[start : start + length]
            if magic != MAGIC or len(payload) < length or crc != _crc(kind, seq, payload):
                result.torn.append(path)
                break
            if kind == KIND_DONE and length % 8:
                result.torn.append(path)  # not a record we write
                break
            if kind == KIND_MSG:
                result.pending[seq] = MsgRef(seq, path, start, length)
            elif kind == KIND_DONE:
                done.update(struct.unpack(f">{length // 8}Q", payload))
            result.next_seq = max(result.next_seq, seq + 1)
            pos = start + length
    for seq in done:
        result.pending.pop(seq, None)
    return result


def read_payload(ref: MsgRef) -> bytes:
    with open(ref.segment, "rb") as f:
        f.seek(ref.offset)
        data = f.read(ref.length)
    if len(data) != ref.length:
        raise JournalError(f"{ref.segment.name}: record {ref.seq} is short")
    return data


class SegmentWriter:
    """The active segment: appends records and makes them durable. Not thread-safe: one
    thread at a time.

    The file is zero-filled ``PREALLOCATE`` bytes ahead of the records, so that most
    ``fdatasync`` calls flush data only: one that also has to commit a new file size (an
    append) took 0.46 ms here against 0.17 ms (p50, 10 KB, ext4). Zeros after the last record
    read as a torn tail, which ends the segment for ``scan``, as the end of the file would."""

    def __init__(self, directory: Path, first_seq: int) -> None:
        self.directory = directory
        self.path = directory / segment_name(first_seq)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fsync_dir(directory)  # the new name is durable before any record in it is acknowledged
        self.size = 0  # where the next record goes
        self._zeroed = 0  # the file's length: zeros from ``size`` to here

    def append(self, records: list[bytes], sync: bool = True) -> int:
        """Write ``records`` and fdatasync them; on return they survive a power cut. Returns
        the offset in the segment where the first one begins. ``sync=False``: written, made
        durable by the next synced append (for DONE records, whose loss costs a redelivery
        that the delivery keys turn into nothing)."""
        start = self.size
        data = b"".join(records)
        end = start + len(data)
        if end > self._zeroed:  # the next stretch of zeros (its size is made durable below)
            grow = max(PREALLOCATE, end - self._zeroed)
            _write_all(self._fd, bytes(grow), self._zeroed)
            self._zeroed += grow
        _write_all(self._fd, data, start)
        if sync:
            os.fdatasync(self._fd)
        self.size = end
        return start

    def close(self) -> None:
        os.close(self._fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


# -- which journal is this process's -----------------------------------------------------------

JOURNAL_NAME = "intake"
LOCK_NAME = "lock"


@dataclass(slots=True)
class Claim:
    """This process's journal directory (locked while it runs) and the journals of processes
    that are gone (locked by us until ``adopt`` has taken their messages over)."""

    directory: Path
    lock_fd: int
    orphans: list[tuple[Path, int]] = field(default_factory=list)


def _journal_index(path: Path) -> int | None:
    if path.name == JOURNAL_NAME:
        return 0
    prefix = JOURNAL_NAME + "."
    rest = path.name[len(prefix) :]
    return int(rest) if path.name.startswith(prefix) and rest.isdigit() else None


def _try_lock(directory: Path) -> int | None:
    """A descriptor holding ``directory``'s lock, or None if a live process holds it (or the
    directory is gone)."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not (directory / LOCK_NAME).exists():  # removed by an adopter while we waited
        os.close(fd)
        return None
    return fd


def claim(data_dir: Path) -> Claim:
    """``intake``, or ``intake.N`` when other ``merpati serve`` processes on this data dir hold
    the lower ones: every process writes a journal of its own (two processes writing or
    cleaning one journal would delete each other's records). Journals whose process is gone
    come back as orphans, to be adopted."""
    found = sorted(
        (index, path)
        for path in data_dir.iterdir()
        if path.is_dir() and (index := _journal_index(path)) is not None
    )
    ours: tuple[Path, int] | None = None
    orphans: list[tuple[Path, int]] = []
    for _, path in found:
        fd = _try_lock(path)
        if fd is None:
            continue
        if ours is None:
            ours = (path, fd)
        else:
            orphans.append((path, fd))
    n = 0
    while ours is None:
        path = data_dir / (JOURNAL_NAME if n == 0 else f"{JOURNAL_NAME}.{n}")
        n += 1
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue  # held by a live process (or just made by one)
        fsync_dir(data_dir)
        fd = _try_lock(path)
        if fd is not None:
            ours = (path, fd)
    return Claim(ours[0], ours[1], orphans)


def adopt(orphans: list[tuple[Path, int]], writer: SegmentWriter, next_seq: int) -> list[MsgRef]:
    """Copy the undelivered messages of gone processes' journals into ours (one fsync), then
    remove those journals. The copies keep their envelopes, delivery keys included, so a
    message its old process delivered without writing DONE is still not stored twice."""
    refs: list[MsgRef] = []
    for directory, fd in orphans:
        found = scan(directory)
        payloads = [read_payload(r) for r in sorted(found.pending.values(), key=lambda r: r.seq)]
        seqs = list(range(next_seq, next_seq + len(payloads)))
        next_seq += len(payloads)
        if payloads:
            offset = writer.append(
                [encode(KIND_MSG, q, p) for q, p in zip(seqs, payloads, strict=True)]
            )
            for seq, payload in zip(seqs, payloads, strict=True):
                offset += HEADER_SIZE
                refs.append(MsgRef(seq, writer.path, offset, len(payload)))
                offset += len(payload)
        for path in found.segments:
            path.unlink()
        (directory / LOCK_NAME).unlink()
        os.close(fd)
        with contextlib.suppress(OSError):  # something not ours in it: leave the directory
            directory.rmdir()
        fsync_dir(directory.parent)
    return refs
