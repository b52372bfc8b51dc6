"""``[policy] connection_rate_per_ip`` and ``outbound_rate_per_account`` counted across the
processes of one ``merpati serve`` (``workers = N``), so that N processes do not allow N
times the rate.

One process keeps an exact log of event times per key (``RateLimiter``); a table shared by
several keeps two counters per key instead, this window's and the last one's, and estimates
the events of the sliding window as ``last * (1 - elapsed / window) + this`` (the usual
sliding-window counter: exact when events are spread evenly, never more than one window's
count off). Records: (key, start of this window, this window's count, the last one's), in a
``SharedTable`` (``merpati.sharedtable``). A key the table has no room for is counted by the
process's own ``RateLimiter``.
"""

from __future__ import annotations

import struct
import time

from merpati.sharedtable import SharedTable, key_of
from merpati.trust.ratelimit import RateLimiter

SLOTS = 65536
_RECORD = struct.Struct("<QdII")  # key, start of this window, this window's count, last one's


def create_table() -> SharedTable:
    return SharedTable.create("merpati-rates", _RECORD, SLOTS)


def attach_table(fd: int) -> SharedTable:
    return SharedTable(fd, _RECORD, SLOTS)


class SharedRateLimiter(RateLimiter):
    def __init__(self, limit: int, window: float, table: SharedTable, kind: str) -> None:
        super().__init__(limit, window)
        self.table = table
        self.kind = kind  # keys of different limiters never meet in the one table

    def _state(self, offset: int, key: int, now: float) -> tuple[float, int, int]:
        """(start, this window's count, the last one's) of ``key``, rolled forward to now."""
        found, start, this, last = self.table.read(offset)
        if found != key or now - start >= 2 * self.window:
            return now, 0, 0
        if now - start >= self.window:
            return start + self.window, 0, int(this)
        return float(start), int(this), int(last)

    def _estimate(self, start: float, this: int, last: int, now: float) -> float:
        return last * max(0.0, 1 - (now - start) / self.window) + this

    def allow(self, key: str, now: float | None = None) -> bool:
        if self.limit <= 0:
            return True
        when = time.monotonic() if now is None else now
        t, k = self.table, key_of(self.kind, key)
        with t.locked():
            offset = t.slot(k, when, 2 * self.window, insert=True)
            if offset is not None:
                start, this, last = self._state(offset, k, when)
                allowed = self._estimate(start, this, last, when) < self.limit
                t.write(offset, k, start, this + 1 if allowed else this, last)
                return allowed
        return super().allow(key, when)  # no room in the table: this process counts alone

    def retry_after(self, key: str, now: float | None = None) -> float:
        if self.limit <= 0:
            return 0.0
        when = time.monotonic() if now is None else now
        t, k = self.table, key_of(self.kind, key)
        with t.locked():
            offset = t.slot(k, when, 2 * self.window, insert=False)
            if offset is None:
                return super().retry_after(key, when)
            start, this, last = self._state(offset, k, when)
        if self._estimate(start, this, last, when) < self.limit:
            return 0.0
        if this >= self.limit or last == 0:  # not before this window is over
            return max(0.0, start + self.window - when)
        # last * (1 - (t - start) / window) + this < limit, solved for t
        until = start + self.window * (1 - (self.limit - this) / last)
        return max(0.0, until - when)


def shared_limiter(limiter: RateLimiter, table: SharedTable, kind: str) -> SharedRateLimiter:
    """``limiter``'s limit and window, counted in ``table`` under keys of ``kind``."""
    return SharedRateLimiter(limiter.limit, limiter.window, table, kind)
