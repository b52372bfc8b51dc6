"""Auth failure counts shared by the processes of one ``merpati serve`` (``workers = N``), so
that a guesser spreading attempts over the processes meets the same growing delay as one who
does not (``merpati.auth.throttle`` has the rule).

A table in shared memory (a ``memfd`` the main process hands to each worker): slots of (key,
failures, time of the last failure), the key a 64-bit hash of "ip:..." or "account:...",
found by linear probing within ``PROBES`` slots of its home. Every process reads and writes
it under an ``fcntl`` lock on the file, held for a few microseconds; auth attempts are rare
next to the work around them. Slots are never emptied, so probe chains stay whole: a slot
whose last failure is older than the window counts as zero and is the first taken by a new
key. When the neighbourhood of a key is full of live entries (a spread-out attack on many
keys), the failure is counted in the process's own counters instead, and both are added up.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from merpati.auth.throttle import FailureCount, Throttle

SLOTS = 65536
PROBES = 64  # a key lives within this many slots of its home; so lookups stop there too
_SLOT = struct.Struct("<QI4xd")  # key, failures, last failure (monotonic clock, system-wide)
SIZE = SLOTS * _SLOT.size


def _key(kind: str, value: str) -> int:
    raw = hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") or 1


class FailureTable:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, SIZE)

    @classmethod
    def create(cls) -> FailureTable:
        fd = os.memfd_create("merpati-auth-failures")  # close-on-exec: passed to workers only
        os.ftruncate(fd, SIZE)
        return cls(fd)

    def _slot(self, key: int, now: float, window: float, insert: bool) -> int | None:
        start = key % SLOTS
        reuse: int | None = None
        for probe in range(PROBES):
            offset = ((start + probe) % SLOTS) * _SLOT.size
            found, _, last = _SLOT.unpack_from(self._map, offset)
            if found == key:
                return offset
            if found == 0:
                return (reuse if reuse is not None else offset) if insert else None
            if reuse is None and now - last > window:
                reuse = offset
        return reuse if insert else None

    def failures(self, kind: str, value: str, now: float, window: float) -> int:
        with self._locked():
            offset = self._slot(_key(kind, value), now, window, insert=False)
            if offset is None:
                return 0
            _, failures, last = _SLOT.unpack_from(self._map, offset)
        return int(failures) if now - last <= window else 0

    def add_failure(self, kind: str, value: str, now: float, window: float) -> bool:
        """Count one; False when there was no room for it."""
        key = _key(kind, value)
        with self._locked():
            offset = self._slot(key, now, window, insert=True)
            if offset is None:
                return False
            found, failures, last = _SLOT.unpack_from(self._map, offset)
            if found != key or now - last > window:
                failures = 0
            _SLOT.pack_into(self._map, offset, key, failures + 1, now)
        return True

    def clear(self, kind: str, value: str, now: float, window: float) -> None:
        key = _key(kind, value)
        with self._locked():
            offset = self._slot(key, now, window, insert=False)
            if offset is not None:
                _SLOT.pack_into(self._map, offset, key, 0, 0.0)

    def _locked(self) -> _Lock:
        return _Lock(self.fd)

    def close(self) -> None:
        self._map.close()


class _Lock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


@dataclass
class SharedThrottle(Throttle):
    """``Throttle`` counting in the shared table; in this process's own counters only what
    the table had no room for. A success clears the account in both, for every process."""

    table: FailureTable | None = None

    def delay(self, ip: str, account: str) -> float:
        if self.table is None:
            return super().delay(ip, account)
        now = self.clock()
        n = max(
            self.table.failures("ip", ip, now, self.window) + self._local(self._by_ip, ip),
            self.table.failures("account", account, now, self.window)
            + self._local(self._by_account, account),
        )
        return 0.0 if n < self.free else float(min(self.max_delay, 2 ** (n - self.free)))

    def _local(self, table: dict[str, FailureCount], key: str) -> int:
        counter = table.get(key)
        if counter is None or counter.last < self.clock() - self.window:
            return 0
        return counter.failures

    def failure(self, ip: str, account: str) -> None:
        if self.table is None:
            super().failure(ip, account)
            return
        now = self.clock()
        for kind, value, local in (("ip", ip, self._by_ip), ("account", account, self._by_account)):
            if not self.table.add_failure(kind, value, now, self.window):
                counter = self._get(local, value)
                counter.failures += 1
                counter.last = now

    def success(self, ip: str, account: str) -> None:
        super().success(ip, account)
        if self.table is not None:
            self.table.clear("account", account, self.clock(), self.window)


def shared(throttle: Throttle, table: FailureTable, clock: Callable[[], float]) -> SharedThrottle:
    """``throttle``'s settings, counting in ``table`` too."""
    return SharedThrottle(
        free=throttle.free,
        window=throttle.window,
        max_delay=throttle.max_delay,
        clock=clock,
        table=table,
    )
