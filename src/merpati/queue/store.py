"""The durable outbound queue: SQLite (WAL, synchronous=FULL) plus one file per message.

Layout under ``data_dir/queue``: ``queue.db`` (messages and per-recipient state), ``msg/<id>``
(the message bytes, written once) and ``tmp/`` (files being written). Enqueue writes the file
to ``tmp/``, fsyncs it, renames it into ``msg/``, fsyncs the directory, then commits the rows;
only then does it return. A crash before the commit leaves an orphan file that ``open`` removes
later; a crash after it loses nothing.

Several processes may share the queue (a server and the ``merpati queue`` CLI, or two
servers): a runner claims a message with a lease (owner, expiry) in one IMMEDIATE transaction,
renews it while it works, and releases it when the attempt is recorded. A lease of a process
that died on this host is released at start, so a restart after SIGKILL retries at once.

This module does no networking and makes no routing or retry decisions.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from merpati.delivery.api import Envelope, Recipient
from merpati.delivery.codec import envelope_fields, envelope_from_fields
from merpati.durable import fsync_dir

__all__ = ["QueueStore", "QueuedMessage", "QueuedRecipient", "RecipientUpdate"]

State = Literal["pending", "delivered", "bounced"]

# Orphan message files (a crash between the file and the commit) older than this are removed.
ORPHAN_AGE = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    mail_from TEXT NOT NULL,
    envelope TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    warned INTEGER NOT NULL DEFAULT 0,
    bounce_requested INTEGER NOT NULL DEFAULT 0,
    poked INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_due ON messages(next_attempt);
CREATE TABLE IF NOT EXISTS recipients (
    message_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    notify TEXT NOT NULL DEFAULT '',
    orcpt TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_status TEXT,
    last_reply TEXT,
    remote_mta TEXT,
    relayed INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, idx)
);
"""


@dataclass(slots=True)
class QueuedRecipient:
    idx: int
    address: str
    notify: frozenset[str]
    orcpt: str | None
    state: State = "pending"
    attempts: int = 0
    last_code: int | None = None
    last_status: str | None = None
    last_reply: str | None = None
    remote_mta: str | None = None
    relayed: bool = False  # delivered to a peer without DSN support (rfc3461:6.2.2 "relayed")
    notified: bool = False  # the DSN for its final state has been handed over (or not needed)

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.address, cast(Any, self.notify), self.orcpt)


@dataclass(slots=True)
class QueuedMessage:
    id: str
    envelope: Envelope
    size: int
    created: float
    next_attempt: float
    attempts: int
    warned: bool
    bounce_requested: bool
    recipients: list[QueuedRecipient] = field(default_factory=list)
    lease_owner: str | None = None

    @property
    def pending(self) -> list[QueuedRecipient]:
        return [r for r in self.recipients if r.state == "pending"]


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    idx: int
    state: State
    code: int | None
    status: str | None
    reply: str | None
    remote_mta: str | None
    relayed: bool = False
    attempted: bool = True
    notified: bool = False  # no DSN will be due for this state (the peer took the duty over)


def _envelope_json(env: Envelope) -> str:
    return json.dumps(envelope_fields(env))


def _envelope_from(mail_from: str, text: str, rcpts: tuple[Recipient, ...]) -> Envelope:
    return envelope_from_fields(mail_from, json.loads(text), rcpts)


def new_queue_id(now: float) -> str:
    """Sortable by time, unique across processes: 11 hex digits of microseconds + 8 random."""
    return f"{int(now * 1_000_000):013x}{secrets.token_hex(4)}"


class QueueStore:
    """Synchronous core with ``async`` wrappers that run it in a thread."""

    def __init__(self, root: Path, db: sqlite3.Connection, fast: sqlite3.Connection) -> None:
        self.root = root
        self.msg_dir = root / "msg"
        self.tmp_dir = root / "tmp"
        self._db = db
        self._lock = threading.Lock()
        self._fast = fast
        self._fast_lock = threading.Lock()
        pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{pid}:{_start_time(pid)}:{secrets.token_hex(4)}"

    @classmethod
    def open(cls, data_dir: Path) -> QueueStore:
        root = Path(data_dir) / "queue"
        for d in (root, root / "msg", root / "tmp"):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = _connect(root / "queue.db", "FULL")
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
        if "poked" not in columns:  # a queue made by an earlier version
            db.execute("ALTER TABLE messages ADD COLUMN poked INTEGER NOT NULL DEFAULT 0")
        # The runner's bookkeeping (leases, outcomes, deletions) needs no fsync of its own:
        # a lost commit after a power failure means a retry (a duplicate), never a loss; a
        # process crash loses nothing. Enqueue and operator commands use the FULL connection.
        fast = _connect(root / "queue.db", "NORMAL")
        return cls(root, db, fast)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._fast_lock:
            self._fast.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db, self._lock)

    def _fast_tx(self) -> _Tx:
        return _Tx(self._fast, self._fast_lock)

    # -- enqueue ------------------------------------------------------------------------
    def enqueue_sync(
        self,
        envelope: Envelope,
        message: bytes,
        recipients: tuple[Recipient, ...],
        now: float | None = None,
    ) -> str:
        if not recipients:
            raise ValueError("no recipients to queue")
        now = time.time() if now is None else now
        qid = new_queue_id(now)
        tmp = self.tmp_dir / qid
        with open(tmp, "wb") as f:
            f.write(message)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.msg_dir / qid)
        fsync_dir(self.msg_dir)
        with self._tx() as db:
            db.execute(
                "INSERT INTO messages (id, mail_from, envelope, size, created, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (qid, envelope.mail_from, _envelope_json(envelope), len(message), now, now),
            )
            db.executemany(
                "INSERT INTO recipients (message_id, idx, address, notify, orcpt)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (qid, i, r.address, ",".join(sorted(r.notify)), r.orcpt)
                    for i, r in enumerate(recipients)
                ],
            )
        return qid

    async def enqueue(
        self, envelope: Envelope, message: bytes, recipients: tuple[Recipient, ...]
    ) -> str:
        return await asyncio.to_thread(self.enqueue_sync, envelope, message, recipients)

    def message_path(self, qid: str) -> Path:
        return self.msg_dir / qid

    def read_message(self, qid: str) -> bytes:
        return self.message_path(qid).read_bytes()

    # -- reading ------------------------------------------------------------------------
    def _load(
        self, db: sqlite3.Connection, rows: Iterable[sqlite3.Row | tuple[Any, ...]]
    ) -> list[QueuedMessage]:
        out: list[QueuedMessage] = []
        for row in rows:
            qid, mail_from, env_text, size, created, nxt, attempts, warned, bounce, owner = row
            rcpts = [
                QueuedRecipient(
                    idx=r[0],
                    address=r[1],
                    notify=frozenset(n for n in r[2].split(",") if n),
                    orcpt=r[3],
                    state=r[4],
                    attempts=r[5],
                    last_code=r[6],
                    last_status=r[7],
                    last_reply=r[8],
                    remote_mta=r[9],
                    relayed=bool(r[10]),
                    notified=bool(r[11]),
                )
                for r in db.execute(
                    "SELECT idx, address, notify, orcpt, state, attempts, last_code, last_status,"
                    " last_reply, remote_mta, relayed, notified FROM recipients"
                    " WHERE message_id = ? ORDER BY idx",
                    (qid,),
                )
            ]
            env = _envelope_from(mail_from, env_text, tuple(r.recipient for r in rcpts))
            out.append(
                QueuedMessage(
                    qid, env, size, created, nxt, attempts, bool(warned), bool(bounce), rcpts, owner
                )
            )
        return out

    _COLUMNS = (
        "id, mail_from, envelope, size, created, next_attempt, attempts, warned,"
        " bounce_requested, lease_owner"
    )

    def list_messages(self) -> list[QueuedMessage]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM messages ORDER BY created"
            ).fetchall()
            return self._load(self._db, rows)

    def get(self, qid: str) -> QueuedMessage | None:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM messages WHERE id = ?", (qid,)
            ).fetchall()
            found = self._load(self._db, rows)
        return found[0] if found else None

    def exists(self, qid: str) -> bool:
        with self._fast_lock:
            row = self._fast.execute("SELECT 1 FROM messages WHERE id = ?", (qid,)).fetchone()
        return row is not None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    # -- the runner's leases ------------------------------------------------------------
    def claim_due(
        self, now: float, lease: float, limit: int, exclude: set[str]
    ) -> list[QueuedMessage]:
        with self._fast_lock:  # a read first: most looks find nothing, and take no write lock
            due = self._fast.execute(
                "SELECT count(*) FROM messages WHERE next_attempt <= ? AND lease_until <= ?",
                (now, now),
            ).fetchone()[0]
        if not due:
            return []
        with self._fast_tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM messages WHERE next_attempt <= ? AND lease_until <= ?"
                    " ORDER BY next_attempt LIMIT ?",
                    (now, now, limit + len(exclude)),
                )
                if r[0] not in exclude
            ][:limit]
            db.executemany(
                "UPDATE messages SET lease_owner = ?, lease_until = ?, poked = 0 WHERE id = ?",
                [(self.owner, now + lease, qid) for qid in ids],
            )
            rows = [
                db.execute(f"SELECT {self._COLUMNS} FROM messages WHERE id = ?", (qid,)).fetchone()
                for qid in ids
            ]
            return self._load(db, [r for r in rows if r is not None])

    def renew_leases(self, until: float) -> None:
        with self._fast_tx() as db:
            db.execute(
                "UPDATE messages SET lease_until = ? WHERE lease_owner = ?", (until, self.owner)
            )

    def release_stale_leases(self, now: float) -> int:
        """Release leases held by processes of this host that are no longer running (a pid
        that now belongs to another process, after a restart, counts as not running)."""
        host = socket.gethostname()
        released = 0
        with self._fast_tx() as db:
            for qid, owner in db.execute(
                "SELECT id, lease_owner FROM messages WHERE lease_owner IS NOT NULL"
                " AND lease_until > ?",
                (now,),
            ).fetchall():
                parts = str(owner).rsplit(":", 3)
                if len(parts) != 4 or parts[0] != host or not parts[1].isdigit():
                    continue
                pid = int(parts[1])
                if _pid_alive(pid) and parts[2] == _start_time(pid):
                    continue
                db.execute(
                    "UPDATE messages SET lease_owner = NULL, lease_until = 0 WHERE id = ?", (qid,)
                )
                released += 1
        return released

    def release(self, ids: list[str]) -> None:
        """Give claimed messages back unchanged (a stopping runner)."""
        with self._fast_tx() as db:
            db.executemany(
                "UPDATE messages SET lease_owner = NULL, lease_until = 0"
                " WHERE id = ? AND lease_owner = ?",
                [(qid, self.owner) for qid in ids],
            )

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT min(max(next_attempt, lease_until)) FROM messages"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    # -- recording outcomes -------------------------------------------------------------
    def record(self, qid: str, updates: list[RecipientUpdate]) -> None:
        with self._fast_tx() as db:
            _record(db, qid, updates)

    def finish(
        self,
        qid: str,
        *,
        attempts: int,
        next_attempt: float,
        warned: bool,
        delete: bool,
        updates: list[RecipientUpdate] | None = None,
        notified: list[int] | None = None,
    ) -> None:
        """End an attempt in one transaction: record the last outcomes, then delete the
        message, or reschedule it and release the lease."""
        with self._fast_tx() as db:
            if updates and not delete:
                _record(db, qid, updates)
            if notified and not delete:
                _mark_notified(db, qid, notified)
            if delete:
                db.execute("DELETE FROM recipients WHERE message_id = ?", (qid,))
                db.execute("DELETE FROM messages WHERE id = ?", (qid,))
            else:
                # An operator's flush/retry/bounce during the attempt wins over the schedule.
                db.execute(
                    "UPDATE messages SET attempts = ?,"
                    " next_attempt = CASE WHEN poked = 1 THEN next_attempt ELSE ? END,"
                    " poked = 0, warned = ?, lease_owner = NULL, lease_until = 0 WHERE id = ?",
                    (attempts, next_attempt, int(warned), qid),
                )
        if delete:
            try:
                self.message_path(qid).unlink()
            except FileNotFoundError:
                pass

    # -- operator commands (work while a server runs) -------------------------------------
    def flush(self, now: float) -> int:
        with self._tx() as db:
            return db.execute("UPDATE messages SET next_attempt = ?, poked = 1", (now,)).rowcount

    def retry(self, qid: str, now: float) -> bool:
        with self._tx() as db:
            return (
                db.execute(
                    "UPDATE messages SET next_attempt = ?, poked = 1 WHERE id = ?", (now, qid)
                ).rowcount
                == 1
            )

    def request_bounce(self, qid: str, now: float) -> bool:
        with self._tx() as db:
            return (
                db.execute(
                    "UPDATE messages SET bounce_requested = 1, poked = 1, next_attempt = ?"
                    " WHERE id = ?",
                    (now, qid),
                ).rowcount
                == 1
            )

    def remove(self, qid: str) -> bool:
        with self._tx() as db:
            found = db.execute("DELETE FROM messages WHERE id = ?", (qid,)).rowcount == 1
            db.execute("DELETE FROM recipients WHERE message_id = ?", (qid,))
        if found:
            try:
                self.message_path(qid).unlink()
            except FileNotFoundError:
                pass
        return found

    def remove_orphans(self, now: float) -> int:
        """Delete message files that no row names (a crash between file and commit)."""
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT id FROM messages")}
        removed = 0
        for d in (self.msg_dir, self.tmp_dir):
            for p in d.iterdir():
                try:
                    if p.name not in known and now - p.stat().st_mtime > ORPHAN_AGE:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


def _record(db: sqlite3.Connection, qid: str, updates: list[RecipientUpdate]) -> None:
    db.executemany(
        "UPDATE recipients SET state = ?, attempts = attempts + ?, last_code = ?,"
        " last_status = ?, last_reply = ?, remote_mta = coalesce(?, remote_mta),"
        " relayed = ?, notified = max(notified, ?) WHERE message_id = ? AND idx = ?",
        [
            (
                u.state,
                1 if u.attempted else 0,
                u.code,
                u.status,
                u.reply,
                u.remote_mta,
                int(u.relayed),
                int(u.notified),
                qid,
                u.idx,
            )
            for u in updates
        ],
    )


def _mark_notified(db: sqlite3.Connection, qid: str, idxs: list[int]) -> None:
    db.executemany(
        "UPDATE recipients SET notified = 1 WHERE message_id = ? AND idx = ?",
        [(qid, i) for i in idxs],
    )


def _start_time(pid: int) -> str:
    """When process ``pid`` started (Linux: clock ticks since boot, /proc/PID/stat field 22);
    "" where that cannot be read, which then matches any process with that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Tx:
    """``with store._tx() as db``: the lock, then BEGIN IMMEDIATE ... COMMIT (or ROLLBACK)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
            else:
                self._db.execute("ROLLBACK")
        finally:
            self._lock.release()
