"""Auth failures counted across processes: two tables on one shared file stand for two
processes of one server."""

from __future__ import annotations

import os

from merpati.auth.shared_throttle import FailureTable, SharedThrottle
from merpati.sharedtable import PROBES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_in_one_process_delay_the_next_attempt_in_another() -> None:
    clock = Clock()
    table = FailureTable.create()
    other = FailureTable(table.fd)
    try:
        main = SharedThrottle(free=2, clock=clock, table=table)
        worker = SharedThrottle(free=2, clock=clock, table=other)
        worker.failure("192.0.2.9", "alice@example.org")
        worker.failure("192.0.2.9", "alice@example.org")
        assert main.delay("192.0.2.9", "bob@example.org") == 1.0  # the IP's two failures
        assert main.delay("198.51.100.1", "alice@example.org") == 1.0  # the account's
        assert main.delay("198.51.100.1", "bob@example.org") == 0.0
        main.failure("192.0.2.9", "alice@example.org")
        assert worker.delay("192.0.2.9", "carol@example.org") == 2.0  # doubles, shared
        main.success("192.0.2.9", "alice@example.org")  # clears the account, not the IP
        assert worker.delay("198.51.100.1", "alice@example.org") == 0.0
        assert worker.delay("192.0.2.9", "carol@example.org") == 2.0
        clock.now += main.window + 1  # old failures no longer count
        assert worker.delay("192.0.2.9", "carol@example.org") == 0.0
    finally:
        table.close()
        other.close()
        os.close(table.fd)


def test_a_crowded_table_still_answers_and_reuses_stale_slots() -> None:
    clock = Clock()
    table = FailureTable.create()
    try:
        throttle = SharedThrottle(free=1, clock=clock, table=table)
        for n in range(PROBES * 4):
            table.add_failure("ip", f"10.0.{n // 256}.{n % 256}", clock.now, throttle.window)
        throttle.failure("203.0.113.5", "x@example.org")
        assert throttle.delay("203.0.113.5", "y@example.org") == 1.0
        clock.now += throttle.window + 1  # everything stale: slots are taken again
        for n in range(PROBES * 4):
            table.add_failure("ip", f"172.16.{n // 256}.{n % 256}", clock.now, throttle.window)
        assert table.failures("ip", "172.16.0.7", clock.now, throttle.window) == 1
        assert table.failures("ip", "10.0.0.7", clock.now, throttle.window) == 0
    finally:
        table.close()
        os.close(table.fd)
