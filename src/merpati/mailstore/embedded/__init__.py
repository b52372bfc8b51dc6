"""The embedded mail store backend: Maildir++ for content, a per-account SQLite index for
metadata, group commit for durable appends. Modules: ``layout`` (paths and file names),
``index`` (SQLite schema), ``sync`` (Maildir -> index), ``account`` (per-account operations in
worker threads), ``commit`` (group commit), ``feed`` (change notification), ``mailbox`` and
``store`` (the async API).
"""

from merpati.mailstore.embedded.store import EmbeddedMailStore

__all__ = ["EmbeddedMailStore"]
