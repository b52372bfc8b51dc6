"""The mail store: every delivery and every reader goes through ``merpati.mailstore.api``.

``open_mailstore(config, quota_lookup)`` is what the server (and the CLI, also while the server
runs) calls to get the configured backend. Backends: ``embedded`` (Maildir++ + SQLite, the
default, ``[storage] backend = "sqlite"``) and ``memory`` (tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from merpati.errors import OperationalError

if TYPE_CHECKING:
    from merpati.config import Config
    from merpati.mailstore.api import MailStore


def open_mailstore(
    config: Config, quota_lookup: Callable[[str], int | None] | None = None
) -> MailStore:
    """The configured store. ``quota_lookup(account)`` -> byte limit or None (no limit); it is
    called on the event loop at each append, so it must be quick (a cached lookup)."""
    if config.storage.backend == "sqlite":
        from merpati.mailstore.embedded import EmbeddedMailStore

        return EmbeddedMailStore(config.data_dir, quota_lookup)
    raise OperationalError(
        f"storage backend {config.storage.backend!r} is not available in this version;"
        ' use backend = "sqlite"'
    )
