"""Brute-force defence: failure counters per IP and per account, with a growing delay.

After ``free`` failures from one IP (or against one account) within ``window`` seconds, each
further attempt is answered only after a delay that doubles with every failure, up to
``max_delay``. A success clears the account's counter (not the IP's: a shared NAT must not
let one valid login unlock guessing for everyone behind it). Pure bookkeeping: the caller
sleeps; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FailureCount:
    failures: int = 0
    last: float = 0.0


@dataclass
class Throttle:
    free: int = 5
    window: float = 900.0
    max_delay: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _by_ip: dict[str, FailureCount] = field(default_factory=dict)
    _by_account: dict[str, FailureCount] = field(default_factory=dict)

    def _get(self, table: dict[str, FailureCount], key: str) -> FailureCount:
        now = self.clock()
        c = table.get(key)
        if c is None or now - c.last > self.window:
            c = FailureCount(0, now)
            table[key] = c
        if len(table) > 100_000:  # bound memory under a distributed attack
            cutoff = now - self.window
            for k in [k for k, v in table.items() if v.last < cutoff]:
                del table[k]
        return c

    def delay(self, ip: str, account: str) -> float:
        """Seconds to wait before answering this attempt."""
        n = max(self._get(self._by_ip, ip).failures, self._get(self._by_account, account).failures)
        if n < self.free:
            return 0.0
        return float(min(self.max_delay, 2 ** (n - self.free)))

    def failure(self, ip: str, account: str) -> None:
        now = self.clock()
        for table, key in ((self._by_ip, ip), (self._by_account, account)):
            c = self._get(table, key)
            c.failures += 1
            c.last = now

    def success(self, ip: str, account: str) -> None:
        self._by_account.pop(account, None)
