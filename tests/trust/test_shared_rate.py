"""The [policy] rate limits shared by the processes of one server: two limiters on one shared
table stand for two processes."""

from __future__ import annotations

import os

from merpati.trust.shared_rate import SharedRateLimiter, attach_table, create_table


def test_events_in_either_process_count_against_one_limit() -> None:
    table = create_table()
    other = attach_table(table.fd)
    try:
        main = SharedRateLimiter(3, 60.0, table, "c")
        worker = SharedRateLimiter(3, 60.0, other, "c")
        outbound = SharedRateLimiter(3, 60.0, other, "o")
        t = 5000.0
        assert main.allow("192.0.2.1", t) and worker.allow("192.0.2.1", t + 1)
        assert main.allow("192.0.2.1", t + 2)
        assert not worker.allow("192.0.2.1", t + 3)  # the fourth in a minute, in either
        assert not main.allow("192.0.2.1", t + 4)
        assert main.retry_after("192.0.2.1", t + 4) > 0
        assert worker.allow("198.51.100.2", t + 4)  # another client is not held up
        assert outbound.allow("192.0.2.1", t + 4)  # nor another limiter with the same key
        # Two windows later the old events are forgotten; one window later they still weigh
        # in proportion to the part of the last window that the sliding window covers.
        assert main.allow("192.0.2.1", t + 61)  # 3 * 59/60 + 0 = 2.95 < 3
        assert not main.allow("192.0.2.1", t + 62)  # 3 * 58/60 + 1 = 3.9
        assert main.allow("192.0.2.1", t + 100)  # 3 * 20/60 + 1 = 2
        assert main.allow("192.0.2.1", t + 200) and main.retry_after("192.0.2.1", t + 200) == 0
    finally:
        table.close()
        other.close()
        os.close(table.fd)
