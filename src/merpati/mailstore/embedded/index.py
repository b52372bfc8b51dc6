"""The per-account SQLite index: schema, opening (WAL, synchronous=FULL), corruption checks.

The index is a cache of the Maildir plus what only it knows (UIDs, UIDVALIDITY, MODSEQs,
keywords, internal-date offsets, parsed structures, expunge tombstones, subscriptions). When
it is missing, unreadable or of an unknown schema, ``open_index`` moves it aside and returns a
fresh one marked for a rebuild from the Maildir (``merpati.mailstore.embedded.sync``).

Connections here are used from worker threads only (never on the event loop), one thread at a
time per connection (callers hold a lock). Writers use ``BEGIN IMMEDIATE`` so that two
processes on one data dir allocate UIDs one after the other.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000  # another process holding the write lock (e.g. a big import)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    dirname TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    new_mtime INTEGER NOT NULL DEFAULT 0,
    cur_mtime INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,
    seen INTEGER NOT NULL,
    recent INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    tz INTEGER NOT NULL,
    size INTEGER NOT NULL,
    uidl TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (folder, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (folder, modseq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_uidl ON messages (folder, uidl);
CREATE TABLE IF NOT EXISTS structures (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (folder, uid)
);
CREATE TABLE IF NOT EXISTS expunged (
    folder INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    uidl TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged (folder, modseq);
CREATE INDEX IF NOT EXISTS expunged_uidl ON expunged (uidl);
CREATE TABLE IF NOT EXISTS keywords (
    folder INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (folder, idx)
) WITHOUT ROWID;
"""


# Tables added to schema 1 later: created on every open when absent (no data to move).
_LATER_TABLES = (
    # Subscribed names whose folder was deleted (rfc9051:6.3.7); other subscriptions are a
    # column of ``folders``.
    "CREATE TABLE IF NOT EXISTS kept_subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID",
    # Deliveries already committed, by idempotency key (MailStore.deliver; intake replay).
    "CREATE TABLE IF NOT EXISTS delivery_keys (key TEXT PRIMARY KEY, at REAL NOT NULL,"
    " uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS delivery_keys_at ON delivery_keys (at)",
)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    # Durability is promised for every committed change (appends above all).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def open_index(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index. A damaged or foreign file is moved aside and a new
    empty index created; whether the Maildir must be (re)read is ``meta.built`` (see sync)."""
    try:
        conn = connect(path)
        version = _version(conn)
        if version == SCHEMA_VERSION:
            _add_later_tables(conn)
            return conn
        if version is not None or _has_tables(conn):
            conn.close()
            raise sqlite3.DatabaseError("index of another schema")
    except sqlite3.DatabaseError:
        _move_aside(path)
        conn = connect(path)
    _create(conn)
    return conn


def _add_later_tables(conn: sqlite3.Connection) -> None:
    for statement in _LATER_TABLES:
        conn.execute(statement)


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        _add_later_tables(conn)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?), ('used', 0),"
            " ('created', ?)",
            (SCHEMA_VERSION, time.time()),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row else None


def _has_tables(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])


def _move_aside(path: Path) -> None:
    stamp = int(time.time())
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.rename(p.with_name(f"{p.name}.broken-{stamp}"))


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
