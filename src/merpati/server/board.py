"""Open connections per client IP and in total, shared by the processes of one ``merpati
serve`` (``workers = N``), so that ``[limits] connections`` and ``connections_per_ip`` hold
for the server as a whole and not for each process.

The board is a shared memory file (``memfd``) that the main process creates and hands to each
worker with the listening sockets. Every process has a region of its own, which only it
writes: a header with its total, then an open-addressing table of (key, count) slots, the key
being a 64-bit hash of the client IP. A process keeps its own counts in memory (the
``Acceptor``'s ``per_ip``) and publishes each change into its region; to decide on a new
connection it adds up the other regions. Nothing is locked: a 4-byte count is written in one
store, and a reader that races a writer is off by that one connection. Two processes taking
connections from one IP at the same instant can therefore go over the limit by one each:
the limits are an abuse brake, not an exact quota.

A worker that is restarted clears its region first, so the connections of a dead process
stop counting once its replacement starts (the main process restarts it within a second).
"""

from __future__ import annotations

import mmap
import struct

from merpati.sharedtable import key_of, memfd

SLOTS = 8192  # per process; a process has at most [limits] connections open, 2000 by default
_HEADER = struct.Struct("<II")  # total, slots in use (live or not)
_SLOT = struct.Struct("<QI4x")  # key, count
REGION = _HEADER.size + SLOTS * _SLOT.size


class ConnectionBoard:
    def __init__(self, fd: int, index: int, processes: int) -> None:
        """Region ``index`` of a board of ``processes`` regions in ``fd`` is ours."""
        self.fd = fd
        self.index = index
        self.processes = processes
        self._map = mmap.mmap(fd, REGION * processes)
        self._base = REGION * index
        self.clear()

    @classmethod
    def create(cls, processes: int) -> ConnectionBoard:
        """The main process's board (region 0); ``fd`` goes to the workers."""
        return cls(memfd("merpati-connections", REGION * processes), 0, processes)

    def clear(self) -> None:
        self._map[self._base : self._base + REGION] = bytes(REGION)

    def others(self, ip: str) -> tuple[int, int]:
        """Connections the other processes have open: in total, and from ``ip``."""
        key = key_of(ip)
        total = from_ip = 0
        for index in range(self.processes):
            if index == self.index:
                continue
            base = REGION * index
            total += _HEADER.unpack_from(self._map, base)[0]
            slot = self._find(base, key)
            if slot is not None:
                from_ip += _SLOT.unpack_from(self._map, slot)[1]
        return total, from_ip

    def publish(self, ip: str, count: int, total: int) -> None:
        """Our open connections from ``ip`` and in total, after a change."""
        key = key_of(ip)
        slot = self._find(self._base, key, insert=True)
        if slot is None:  # the table is full of dead keys: start it again from what we know
            self._rebuild()
            slot = self._find(self._base, key, insert=True)
        if slot is not None:
            self._put(slot, key, count)
        struct.pack_into("<I", self._map, self._base, total)

    def _put(self, slot: int, key: int, count: int) -> None:
        struct.pack_into("<I", self._map, slot + 8, count)  # the count before the key
        struct.pack_into("<Q", self._map, slot, key)

    def _find(self, base: int, key: int, insert: bool = False) -> int | None:
        """The offset of ``key``'s slot in the region at ``base``; with ``insert``, of the
        free slot where it goes (None: not there, or no room)."""
        start = key % SLOTS
        for probe in range(SLOTS):
            slot = base + _HEADER.size + ((start + probe) % SLOTS) * _SLOT.size
            found = _SLOT.unpack_from(self._map, slot)[0]
            if found == key:
                return slot
            if found == 0:
                if not insert:
                    return None
                used = _HEADER.unpack_from(self._map, base)[1]
                if used >= SLOTS * 3 // 4:  # keep probes short: rebuild instead
                    return None
                struct.pack_into("<I", self._map, base + 4, used + 1)
                return slot
        return None

    def _rebuild(self) -> None:
        """Our region holds every IP we saw since the last rebuild; keep the live ones.
        Readers see our counts missing for a moment while this runs."""
        first = self._base + _HEADER.size
        slots = (_SLOT.unpack_from(self._map, first + i * _SLOT.size) for i in range(SLOTS))
        live = [(key, count) for key, count in slots if key and count]
        total = _HEADER.unpack_from(self._map, self._base)[0]
        self.clear()
        struct.pack_into("<I", self._map, self._base, total)
        for key, count in live:
            slot = self._find(self._base, key, insert=True)
            if slot is not None:
                self._put(slot, key, count)

    def close(self) -> None:
        self._map.close()
