"""What the processes of one ``merpati serve`` with ``workers = N`` count together: open
connections (``merpati.server.board``), auth failures (``merpati.auth.shared_throttle``) and
the ``[policy]`` rates (``merpati.trust.shared_rate``). The main process creates the three
shared memory files; each worker is handed their descriptors with the listening sockets and
attaches to them. ``install`` puts them where the acceptor, the authenticator and the abuse
controls count."""

from __future__ import annotations

from dataclasses import dataclass

from merpati.app import App
from merpati.auth.shared_throttle import FailureTable, shared_throttle
from merpati.server.board import ConnectionBoard
from merpati.server.listeners import Acceptor
from merpati.sharedtable import SharedTable
from merpati.trust import shared_rate
from merpati.trust.ratelimit import controls_for


@dataclass
class SharedCounts:
    board: ConnectionBoard
    failures: FailureTable
    rates: SharedTable

    @classmethod
    def create(cls, processes: int) -> SharedCounts:
        return cls(
            ConnectionBoard.create(processes), FailureTable.create(), shared_rate.create_table()
        )

    @classmethod
    def attach(cls, fds: dict[str, int], index: int, processes: int) -> SharedCounts:
        """A worker's view: process ``index`` of ``processes``."""
        return cls(
            ConnectionBoard(fds["board"], index, processes),
            FailureTable(fds["failures"]),
            shared_rate.attach_table(fds["rates"]),
        )

    def fds(self) -> dict[str, int]:
        return {"board": self.board.fd, "failures": self.failures.fd, "rates": self.rates.fd}

    def install(self, app: App, acceptor: Acceptor) -> None:
        acceptor.board = self.board
        app.auth.throttle = shared_throttle(app.auth.throttle, self.failures)
        controls = controls_for(app)
        controls.connections = shared_rate.shared_limiter(controls.connections, self.rates, "c")
        controls.outbound = shared_rate.shared_limiter(controls.outbound, self.rates, "o")
