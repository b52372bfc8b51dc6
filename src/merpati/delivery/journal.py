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
    writer thread owns it."""

    def __init__(self, directory: Path, first_seq: int) -> None:
        self.directory = directory
        self.path = directory / segment_name(first_seq)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fsync_dir(directory)  # the new name is durable before any record in it is acknowledged
        self.size = 0

    def append(self, records: list[bytes]) -> None:
        """Write ``records`` and fdatasync them; on return they survive a power cut."""
        data = b"".join(records)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fdatasync(self._fd)
        self.size += len(data)

    def close(self) -> None:
        os.close(self._fd)
