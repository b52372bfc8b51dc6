"""Greylisting (rfc6647), optional (``[policy] greylisting``, off by default): the first
delivery attempt of an unknown (client network, sender, recipient) triplet is deferred with a
4xx; a retry after ``[policy] greylist_delay`` and within ``RETRY_WINDOW`` passes, and the
triplet is then accepted without delay for ``PASS_LIFETIME``.

Whitelist: authenticated sessions are never greylisted (the caller does not ask), and a
client network that has passed ``AUTO_WHITELIST_AFTER`` times is known-good and passes every
triplet at once (rfc6647:2.2 auto-whitelisting). Clients are grouped by /24 (IPv4) or /64
(IPv6), since large senders retry from another address of the same pool (rfc6647:4.1).

State: ``DATA_DIR/greylist.sqlite3`` (WAL; safe for two server processes). It is not mail:
it is written with synchronous=NORMAL. Calls are short blocking SQLite transactions; from the
event loop use ``check_async``.

Call point: the SMTP transport of the ``smtp`` listener at RCPT TO, for sessions without
AUTH, after the recipient is known to be local::

    decision = await controls.greylist.check_async(peer_ip, mail_from, rcpt)
    if not decision.accept: reply GREYLIST_REPLY (451 4.7.1) for that recipient
"""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from merpati.address import client_ip

__all__ = [
    "AUTO_WHITELIST_AFTER",
    "GREYLIST_REPLY",
    "PASS_LIFETIME",
    "RETRY_WINDOW",
    "Greylist",
    "GreylistDecision",
    "client_network",
]

RETRY_WINDOW = 2 * 86400.0  # a retry later than this starts over
PASS_LIFETIME = 36 * 86400.0  # a passed triplet unused this long is forgotten
AUTO_WHITELIST_AFTER = 5  # passes before a client network is known-good
EXPIRE_EVERY = 1000  # checks between clean-ups of stale rows
GREYLIST_REPLY = b"451 4.7.1 Greylisted, please try again later\r\n"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplets (
    net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, passed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (net, sender, rcpt)
);
CREATE TABLE IF NOT EXISTS clients (
    net TEXT PRIMARY KEY, passes INTEGER NOT NULL, last_pass REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class GreylistDecision:
    accept: bool
    retry_after: float = 0.0  # seconds until a retry would pass
    reason: str = ""  # "new", "early", "passed", "known", "whitelisted-client"


def client_network(ip: str) -> str:
    addr = client_ip(ip)
    if addr is None:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Greylist:
    def __init__(self, path: Path, delay: float) -> None:
        self.path = path
        self.delay = delay
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._checks = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=5.0, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def check(self, ip: str, sender: str, rcpt: str, now: float | None = None) -> GreylistDecision:
        when = time.time() if now is None else now
        net = client_network(ip)
        key = (net, sender.strip().lower(), rcpt.strip().lower())
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                decision = self._decide(db, key, when)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._checks += 1
            if self._checks % EXPIRE_EVERY == 0:
                self._expire(db, when)
        return decision

    async def check_async(self, ip: str, sender: str, rcpt: str) -> GreylistDecision:
        return await asyncio.to_thread(self.check, ip, sender, rcpt)

    def _decide(
        self, db: sqlite3.Connection, key: tuple[str, str, str], now: float
    ) -> GreylistDecision:
        net = key[0]
        client = db.execute("SELECT passes, last_pass FROM clients WHERE net = ?", (net,))
        row = client.fetchone()
        if row and row[0] >= AUTO_WHITELIST_AFTER and now - row[1] < PASS_LIFETIME:
            return GreylistDecision(True, reason="whitelisted-client")
        found = db.execute(
            "SELECT first_seen, last_seen, passed FROM triplets"
            " WHERE net = ? AND sender = ? AND rcpt = ?",
            key,
        ).fetchone()
        if found is None:
            db.execute(
                "INSERT INTO triplets (net, sender, rcpt, first_seen, last_seen, passed)"
                " VALUES (?, ?, ?, ?, ?, 0)",
                (*key, now, now),
            )
            return GreylistDecision(False, self.delay, "new")
        first_seen, last_seen, passed = found
        if passed and now - last_seen < PASS_LIFETIME:
            db.execute(
                "UPDATE triplets SET last_seen = ? WHERE net = ? AND sender = ? AND rcpt = ?",
                (now, *key),
            )
            return GreylistDecision(True, reason="known")
        if passed or now - first_seen > RETRY_WINDOW:
            db.execute(
                "UPDATE triplets SET first_seen = ?, last_seen = ?, passed = 0"
                " WHERE net = ? AND sender = ? AND rcpt = ?",
                (now, now, *key),
            )
            return GreylistDecision(False, self.delay, "new")
        if now - first_seen < self.delay:
            return GreylistDecision(False, self.delay - (now - first_seen), "early")
        db.execute(
            "UPDATE triplets SET last_seen = ?, passed = 1"
            " WHERE net = ? AND sender = ? AND rcpt = ?",
            (now, *key),
        )
        db.execute(
            "INSERT INTO clients (net, passes, last_pass) VALUES (?, 1, ?)"
            " ON CONFLICT(net) DO UPDATE SET passes = passes + 1, last_pass = excluded.last_pass",
            (net, now),
        )
        return GreylistDecision(True, reason="passed")

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        db.execute(
            "DELETE FROM triplets WHERE (passed = 0 AND first_seen < ?) OR last_seen < ?",
            (now - RETRY_WINDOW, now - PASS_LIFETIME),
        )
        db.execute("DELETE FROM clients WHERE last_pass < ?", (now - PASS_LIFETIME,))

    def expire(self, now: float | None = None) -> None:
        with self._lock:
            self._expire(self._db(), time.time() if now is None else now)
