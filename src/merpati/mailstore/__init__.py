"""The mail store: one interface (``api``) and its backends.

``open_mailstore`` is what the server and the CLI call. Provisional until the embedded
Maildir backend lands: the in-memory backend (nothing persists across restarts).
"""

from __future__ import annotations

from collections.abc import Callable

from merpati.config import Config
from merpati.mailstore.api import MailStore
from merpati.mailstore.memory import MemoryMailStore


def open_mailstore(config: Config, quota_lookup: Callable[[str], int | None]) -> MailStore:
    return MemoryMailStore(quota_lookup)
