"""A store-wide, bounded cache of folder snapshots (the ``MessageInfo`` lists that
``messages()`` returns), shared by every account of one ``EmbeddedMailStore``.

A snapshot is valid for one (UIDVALIDITY, HIGHESTMODSEQ) and is brought up to date
incrementally by the account; this module only keeps them and evicts the least recently used
ones when the total number of cached messages passes the budget. Thread-safe (worker threads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from merpati.mailstore.api import MessageInfo

# About 200 bytes per cached message: the default budget is a few hundred MB at most.
DEFAULT_BUDGET = 1_000_000


@dataclass(slots=True)
class Snapshot:
    """A folder's messages as of ``modseq`` (UID order == insertion order)."""

    uidvalidity: int
    modseq: int
    infos: dict[int, MessageInfo] = field(default_factory=dict)


class SnapshotCache:
    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], Snapshot] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}
        self._total = 0

    def get(self, account: str, folder_id: int) -> Snapshot | None:
        with self._lock:
            snap = self._entries.get((account, folder_id))
            if snap is not None:
                self._entries.move_to_end((account, folder_id))
            return snap

    def put(self, account: str, folder_id: int, snap: Snapshot) -> None:
        """Record (or re-record after an update) a snapshot and evict beyond the budget."""
        key = (account, folder_id)
        with self._lock:
            self._total += len(snap.infos) - self._sizes.get(key, 0)
            self._sizes[key] = len(snap.infos)
            self._entries[key] = snap
            self._entries.move_to_end(key)
            while self._total > self.budget and len(self._entries) > 1:
                old_key, _ = self._entries.popitem(last=False)
                self._total -= self._sizes.pop(old_key)

    def drop(self, account: str, folder_id: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == account and folder_id in (None, k[1])]:
                del self._entries[key]
                self._total -= self._sizes.pop(key)
