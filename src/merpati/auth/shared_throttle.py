"""Auth failure counts shared by the processes of one ``merpati serve`` (``workers = N``), so
that a guesser spreading attempts over the processes meets the same growing delay as one who
does not (``merpati.auth.throttle`` has the rule). The counts live in a ``SharedTable``
(``merpati.sharedtable``): one record per IP and per account, (key, time of the last failure,
failures). A failure the table has no room for is counted in the process's own counters
instead, and the two are added up.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from merpati.auth.throttle import FailureCount, Throttle
from merpati.sharedtable import SharedTable, key_of

SLOTS = 65536
_RECORD = struct.Struct("<QdI4x")  # key, last failure, failures


class FailureTable:
    def __init__(self, fd: int) -> None:
        self.table = SharedTable(fd, _RECORD, SLOTS)

    @property
    def fd(self) -> int:
        return self.table.fd

    @classmethod
    def create(cls) -> FailureTable:
        return cls(SharedTable.create("merpati-auth-failures", _RECORD, SLOTS).fd)

    def failures(self, kind: str, value: str, now: float, window: float) -> int:
        t = self.table
        with t.locked():
            offset = t.slot(key_of(kind, value), now, window, insert=False)
            if offset is None:
                return 0
            _, last, failures = t.read(offset)
        return int(failures) if now - last <= window else 0

    def add_failure(self, kind: str, value: str, now: float, window: float) -> bool:
        """Count one; False when there was no room for it."""
        t, key = self.table, key_of(kind, value)
        with t.locked():
            offset = t.slot(key, now, window, insert=True)
            if offset is None:
                return False
            found, last, failures = t.read(offset)
            if found != key or now - last > window:
                failures = 0
            t.write(offset, key, now, int(failures) + 1)
        return True

    def clear(self, kind: str, value: str, now: float, window: float) -> None:
        t, key = self.table, key_of(kind, value)
        with t.locked():
            offset = t.slot(key, now, window, insert=False)
            if offset is not None:
                t.write(offset, key, 0.0, 0)

    def close(self) -> None:
        self.table.close()


class SharedThrottle(Throttle):
    """``Throttle`` counting in the shared table; in this process's own counters only what
    the table had no room for. A success clears the account in both, for every process."""

    def __init__(
        self,
        table: FailureTable,
        *,
        free: int = 5,
        window: float = 900.0,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(free=free, window=window, max_delay=max_delay, clock=clock)
        self.table = table

    def delay(self, ip: str, account: str) -> float:
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
        now = self.clock()
        for kind, value, local in (("ip", ip, self._by_ip), ("account", account, self._by_account)):
            if not self.table.add_failure(kind, value, now, self.window):
                counter = self._get(local, value)
                counter.failures += 1
                counter.last = now

    def success(self, ip: str, account: str) -> None:
        super().success(ip, account)
        self.table.clear("account", account, self.clock(), self.window)


def shared_throttle(throttle: Throttle, table: FailureTable) -> SharedThrottle:
    """``throttle``'s settings, counting in ``table``."""
    return SharedThrottle(
        table,
        free=throttle.free,
        window=throttle.window,
        max_delay=throttle.max_delay,
        clock=throttle.clock,
    )
