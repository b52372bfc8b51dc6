"""The connection board: what one process publishes, the others count; a full table is
rebuilt from the live entries; a restarted process starts from a clean region."""

from __future__ import annotations

import os

from merpati.server.board import SLOTS, ConnectionBoard


def test_each_process_sees_the_others_connections() -> None:
    main = ConnectionBoard.create(3)
    worker = ConnectionBoard(main.fd, 1, 3)
    other = ConnectionBoard(main.fd, 2, 3)
    try:
        assert main.others("192.0.2.1") == (0, 0)
        worker.publish("192.0.2.1", 2, 5)
        other.publish("192.0.2.1", 1, 1)
        other.publish("2001:db8::1", 1, 2)
        assert main.others("192.0.2.1") == (7, 3)  # 5 + 2 open in all, 2 + 1 from that IP
        assert main.others("2001:db8::1") == (7, 1)
        assert worker.others("192.0.2.1") == (2, 1)  # its own do not count twice
        worker.publish("192.0.2.1", 0, 3)
        assert main.others("192.0.2.1") == (5, 1)
        ConnectionBoard(main.fd, 2, 3)  # process 2 restarted: its old counts are gone
        assert main.others("2001:db8::1") == (3, 0)
    finally:
        for board in (main, worker, other):
            board.close()
        os.close(main.fd)


def test_a_table_full_of_gone_clients_is_rebuilt_from_the_live_ones() -> None:
    main = ConnectionBoard.create(2)
    worker = ConnectionBoard(main.fd, 1, 2)
    try:
        worker.publish("198.51.100.7", 3, 3)  # stays open throughout
        for n in range(SLOTS):  # many clients that came and went
            ip = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            worker.publish(ip, 1, 4)
            worker.publish(ip, 0, 3)
        assert main.others("198.51.100.7") == (3, 3)
        assert main.others("10.0.0.5") == (3, 0)
        worker.publish("10.0.0.5", 1, 4)
        assert main.others("10.0.0.5") == (4, 1)
    finally:
        main.close()
        worker.close()
        os.close(main.fd)
