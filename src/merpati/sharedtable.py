"""A fixed-size hash table of records in shared memory, for counts that the processes of one
``merpati serve`` (``workers = N``) must share: auth failures (``merpati.auth.shared_throttle``)
and rate limits (``merpati.trust.shared_rate``).

The main process creates the table in a ``memfd`` and hands the descriptor to each worker
with the listening sockets. Every record starts with its key (a 64-bit hash, 0 for a free
slot) and a time stamp (``time.monotonic()``, one clock for the whole machine); the rest is
the caller's. A key lives within ``PROBES`` slots of its home slot (linear probing), so a
lookup never reads more than that. Slots are never emptied, which keeps probe chains whole:
a record whose stamp is older than the caller's ``stale`` age counts as gone, and is the first
slot a new key takes. Readers and writers hold an ``fcntl`` lock on the file for the few
microseconds of one operation. When a key's neighbourhood holds only live records, ``slot``
says so (None) and the caller counts in its own process instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

PROBES = 64


def memfd(name: str, size: int) -> int:
    """A zero-filled shared memory file of ``size`` bytes; close-on-exec, so only the workers
    it is passed to (``pass_fds``) get it."""
    fd = os.memfd_create(name)
    os.ftruncate(fd, size)
    return fd


def key_of(*parts: str) -> int:
    raw = hashlib.blake2b(":".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") or 1


class SharedTable:
    def __init__(self, fd: int, record: struct.Struct, slots: int) -> None:
        """``record`` begins with the key (``Q``) and the stamp (``d``)."""
        self.fd = fd
        self.record = record
        self.slots = slots
        self._map = mmap.mmap(fd, record.size * slots)
        self._head = struct.Struct("<Qd")

    @classmethod
    def create(cls, name: str, record: struct.Struct, slots: int) -> SharedTable:
        return cls(memfd(name, record.size * slots), record, slots)

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def slot(self, key: int, now: float, stale: float, insert: bool) -> int | None:
        """Under ``locked()``: the offset of ``key``'s record; with ``insert``, else of the
        slot where it goes (free, or holding a stale record). None: not found, or no room."""
        start = key % self.slots
        reuse: int | None = None
        for probe in range(PROBES):
            offset = ((start + probe) % self.slots) * self.record.size
            found, stamp = self._head.unpack_from(self._map, offset)
            if found == key:
                return offset
            if found == 0:
                return (reuse if reuse is not None else offset) if insert else None
            if reuse is None and now - stamp > stale:
                reuse = offset
        return reuse if insert else None

    def read(self, offset: int) -> tuple[int | float, ...]:
        return self.record.unpack_from(self._map, offset)

    def write(self, offset: int, *values: int | float) -> None:
        self.record.pack_into(self._map, offset, *values)

    def close(self) -> None:
        self._map.close()
