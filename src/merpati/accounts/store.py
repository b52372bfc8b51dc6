"""The account database: local domains, accounts with argon2id hashes and quotas, aliases.

One SQLite file (``accounts.db`` in the data dir) in WAL mode, so the CLI can change it while
``merpati serve`` runs and the server sees the change a millisecond later. Lookups (domains,
accounts, quotas, aliases, expansions) are remembered until the database changes: a lookup
more than ``SIGNATURE_SECONDS`` (1 ms) after the last look compares the size, mtime and inode
of ``accounts.db`` and its ``-wal`` file with what they were (two ``stat`` calls, where the
queries cost five to ten SQLite statements per message), and a write through this store
forgets everything at once. As a bound on what a same-tick write in another process could
hide, everything is also forgotten every second. Addresses and domains are stored in
canonical form (``merpati.address``).

Recipient resolution (``expand``) lives here because it is alias logic: aliases first (an alias
may shadow an account of the same name, as Postfix's virtual alias maps do), then the account,
then plus-addressing (``user+tag@`` -> ``user@``), then the domain's catch-all (``@domain``).
Expansion is recursive, loop-safe, de-duplicated and bounded by ``MAX_ALIAS_DEPTH``.

Passwords never pass through here in clear except into ``hash_password``; hashes never leave
except to ``merpati.auth``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from merpati.address import AddressError, canonical_domain, parse_address
from merpati.auth.passwords import hash_password
from merpati.errors import OperationalError

# Depth of alias-to-alias chains followed before giving up (Postfix's virtual_alias_recursion_limit
# is 1000; Exim's is 10). 20 covers any real setup and keeps a hostile config cheap.
MAX_ALIAS_DEPTH = 20
# rfc5321:4.5.3.1.3 a path is at most 256 octets; an alias may name many targets.
MAX_ALIAS_TARGETS = 1000
# Lookups remembered at most (all are forgotten past this: a cache, not a copy of the table).
MEMO_ENTRIES = 10_000
# How long one look at the files vouches for the memo: SMTP asks five to eight questions per
# message within microseconds of each other; one pair of ``stat`` calls answers for them all.
SIGNATURE_SECONDS = 0.001
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    quota INTEGER,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_domain ON accounts(domain);
CREATE TABLE IF NOT EXISTS aliases (
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (address, target)
);
"""


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    domain: str
    quota: int | None


@dataclass(frozen=True, slots=True)
class Expansion:
    """Where mail to one address goes: local accounts and remote addresses."""

    local: tuple[str, ...]
    remote: tuple[str, ...]
    found: bool  # False: nothing known at a local domain (550 5.1.1)


def _canonical(address: str) -> str:
    """Canonical form of an address or of a catch-all ``@domain``."""
    if address.startswith("@"):
        return "@" + canonical_domain(address[1:])
    return parse_address(address).canonical


class AccountStore:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self._memo: dict[tuple[str, str], Any] = {}
        self._signature: tuple[int, ...] = ()
        self._checked = 0.0  # time.monotonic() of the last look at the files

    def _file_signature(self) -> tuple[int, ...]:
        """What changes when anyone commits: the WAL grows or is rewritten, a checkpoint
        writes the database, a restore replaces it. The second counter is the time bound."""
        sig = [int(time.monotonic())]
        for path in (self.path, self._wal):
            try:
                st = os.stat(path)
            except OSError:
                sig.append(-1)
                continue
            sig += (st.st_ino, st.st_size, st.st_mtime_ns)
        return tuple(sig)

    def _remembered(self, kind: str, key: str, look_up: Callable[[], T]) -> T:
        """``look_up()``'s answer for ``(kind, key)``, reused until the database changes."""
        now = time.monotonic()
        if now - self._checked > SIGNATURE_SECONDS or not self._signature:
            self._checked = now
            sig = self._file_signature()
            if sig != self._signature or len(self._memo) > MEMO_ENTRIES:
                self._memo.clear()
                self._signature = sig
        try:
            value: T = self._memo[kind, key]
        except KeyError:
            value = self._memo[kind, key] = look_up()
        return value

    @classmethod
    def open(cls, data_dir: Path) -> AccountStore:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = data_dir / "accounts.db"
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        self._memo.clear()
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._signature = ()  # nothing read before or during the write is reused
        self._db.execute("COMMIT")

    # -- domains -------------------------------------------------------------------------
    def domains(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, domain: str) -> bool:
        return self._remembered("domain", domain, lambda: self._is_local_domain(domain))

    def _is_local_domain(self, domain: str) -> bool:
        try:
            d = canonical_domain(domain)
        except AddressError:
            return False
        return self._db.execute("SELECT 1 FROM domains WHERE name=?", (d,)).fetchone() is not None

    def add_domain(self, domain: str) -> str:
        d = _checked_domain(domain)
        with self._write() as db:
            if db.execute("SELECT 1 FROM domains WHERE name=?", (d,)).fetchone():
                raise OperationalError(f"domain {d} already exists")
            db.execute("INSERT INTO domains(name, created) VALUES (?, ?)", (d, time.time()))
        return d

    def remove_domain(self, domain: str) -> str:
        d = _checked_domain(domain)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM domains WHERE name=?", (d,)).fetchone():
                raise OperationalError(f"unknown domain {d}")
            n = db.execute("SELECT count(*) FROM accounts WHERE domain=?", (d,)).fetchone()[0]
            if n:
                raise OperationalError(f"domain {d} still has {n} account(s); remove them first")
            db.execute("DELETE FROM aliases WHERE address=? OR address LIKE ?", ("@" + d, "%@" + d))
            db.execute("DELETE FROM domains WHERE name=?", (d,))
        return d

    # -- accounts ------------------------------------------------------------------------
    def get_account(self, address: str) -> Account | None:
        return self._remembered("account", address, lambda: self._get_account(address))

    def _get_account(self, address: str) -> Account | None:
        try:
            a = parse_address(address).canonical
        except AddressError:
            return None
        row = self._db.execute(
            "SELECT address, domain, quota FROM accounts WHERE address=?", (a,)
        ).fetchone()
        return Account(row[0], row[1], row[2]) if row else None

    def password_hash(self, address: str) -> str | None:
        row = self._db.execute(
            "SELECT password_hash FROM accounts WHERE address=?", (address,)
        ).fetchone()
        return row[0] if row else None

    def accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            rows = self._db.execute("SELECT address, domain, quota FROM accounts ORDER BY address")
        else:
            d = _checked_domain(domain)
            rows = self._db.execute(
                "SELECT address, domain, quota FROM accounts WHERE domain=? ORDER BY address",
                (d,),
            )
        return [Account(r[0], r[1], r[2]) for r in rows]

    def count_accounts(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM accounts").fetchone()[0])

    def add_account(self, address: str, password: str, quota: int | None = None) -> Account:
        a = _checked_address(address)
        domain = a.split("@", 1)[1]
        if "+" in a.split("@", 1)[0]:
            raise OperationalError(f"bad address {address}: '+' is reserved for plus-addressing")
        pw_hash = hash_password(password)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                raise OperationalError(f"unknown domain {domain} (add it with: domain add)")
            if db.execute("SELECT 1 FROM accounts WHERE address=?", (a,)).fetchone():
                raise OperationalError(f"account {a} already exists")
            db.execute(
                "INSERT INTO accounts(address, domain, password_hash, quota, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (a, domain, pw_hash, quota, time.time()),
            )
        return Account(a, domain, quota)

    def set_password(self, address: str, password: str) -> str:
        a = _checked_address(address)
        pw_hash = hash_password(password)
        with self._write() as db:
            cur = db.execute("UPDATE accounts SET password_hash=? WHERE address=?", (pw_hash, a))
            if cur.rowcount == 0:
                raise OperationalError(f"unknown account {a}")
        return a

    def set_quota(self, address: str, quota: int | None) -> None:
        a = _checked_address(address)
        with self._write() as db:
            cur = db.execute("UPDATE accounts SET quota=? WHERE address=?", (quota, a))
            if cur.rowcount == 0:
                raise OperationalError(f"unknown account {a}")

    def quota(self, address: str) -> int | None:
        account = self.get_account(address)
        return account.quota if account is not None else None

    def remove_account(self, address: str) -> str:
        a = _checked_address(address)
        with self._write() as db:
            cur = db.execute("DELETE FROM accounts WHERE address=?", (a,))
            if cur.rowcount == 0:
                raise OperationalError(f"unknown account {a}")
        return a

    # -- aliases -------------------------------------------------------------------------
    def aliases(self) -> list[tuple[str, tuple[str, ...]]]:
        out: dict[str, list[str]] = {}
        for address, target in self._db.execute(
            "SELECT address, target FROM aliases ORDER BY address, position"
        ):
            out.setdefault(address, []).append(target)
        return [(k, tuple(v)) for k, v in out.items()]

    def alias_targets(self, address: str) -> tuple[str, ...]:
        return self._remembered("alias", address, lambda: self._alias_targets(address))

    def _alias_targets(self, address: str) -> tuple[str, ...]:
        rows = self._db.execute(
            "SELECT target FROM aliases WHERE address=? ORDER BY position", (address,)
        )
        return tuple(r[0] for r in rows)

    def add_alias(self, address: str, targets: list[str]) -> tuple[str, tuple[str, ...]]:
        try:
            a = _canonical(address)
        except AddressError as exc:
            raise OperationalError(f"bad address {address}: {exc}") from None
        if not targets:
            raise OperationalError("an alias needs at least one target")
        if len(targets) > MAX_ALIAS_TARGETS:
            raise OperationalError(f"an alias may have at most {MAX_ALIAS_TARGETS} targets")
        canon: list[str] = []
        for t in targets:
            ct = _checked_address(t)
            if ct not in canon:
                canon.append(ct)
        domain = a.split("@", 1)[1]
        with self._write() as db:
            if not db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                raise OperationalError(f"unknown domain {domain} (add it with: domain add)")
            if db.execute("SELECT 1 FROM aliases WHERE address=?", (a,)).fetchone():
                raise OperationalError(f"alias {a} already exists (remove it first)")
            for i, t in enumerate(canon):
                db.execute(
                    "INSERT INTO aliases(address, target, position) VALUES (?, ?, ?)", (a, t, i)
                )
            loop = self._find_loop(a)
            if loop:
                raise OperationalError(f"alias loop: {' -> '.join(loop)}")
        return a, tuple(canon)

    def remove_alias(self, address: str) -> str:
        try:
            a = _canonical(address)
        except AddressError as exc:
            raise OperationalError(f"bad address {address}: {exc}") from None
        with self._write() as db:
            cur = db.execute("DELETE FROM aliases WHERE address=?", (a,))
            if cur.rowcount == 0:
                raise OperationalError(f"unknown alias {a}")
        return a

    def _find_loop(self, start: str) -> list[str] | None:
        """A chain of aliases from ``start`` back to an address already on the chain."""

        def walk(addr: str, chain: list[str]) -> list[str] | None:
            if len(chain) > MAX_ALIAS_DEPTH:
                return [*chain, "..."]
            for t in self.alias_targets(addr):
                if t in chain:
                    return [*chain, t]
                found = walk(t, [*chain, t])
                if found:
                    return found
            return None

        return walk(start, [start])

    # -- resolution ----------------------------------------------------------------------
    def expand(self, address: str) -> Expansion:
        """Resolve a recipient to local accounts and remote addresses."""
        return self._remembered("expand", address, lambda: self._expand(address))

    def _expand(self, address: str) -> Expansion:
        try:
            parsed = parse_address(address)
        except AddressError:
            return Expansion((), (), False)
        local: list[str] = []
        remote: list[str] = []
        if not self.is_local_domain(parsed.domain):
            return Expansion((), (str(parsed),), True)
        found = self._resolve(parsed.canonical, local, remote, set(), 0)
        return Expansion(tuple(local), tuple(remote), found)

    def _resolve(
        self, addr: str, local: list[str], remote: list[str], seen: set[str], depth: int
    ) -> bool:
        if addr in seen or depth > MAX_ALIAS_DEPTH:
            return True  # a loop or a too-deep chain adds nothing more
        seen.add(addr)
        domain = addr.rsplit("@", 1)[1]
        if not self.is_local_domain(domain):
            if addr not in remote:
                remote.append(addr)
            return True
        targets = self.alias_targets(addr)
        if targets:
            for t in targets:
                self._resolve(t, local, remote, seen, depth + 1)
            return True
        if self.get_account(addr) is not None:
            if addr not in local:
                local.append(addr)
            return True
        lp = addr.rsplit("@", 1)[0]
        if "+" in lp and not lp.startswith("+"):
            base = lp.split("+", 1)[0] + "@" + domain
            if self._resolve(base, local, remote, seen, depth + 1):
                return True
        catch_all = self.alias_targets("@" + domain)
        if catch_all and depth == 0:
            for t in catch_all:
                self._resolve(t, local, remote, seen, depth + 1)
            return True
        return False

    def owns(self, account: str, address: str) -> bool:
        """May ``account`` use ``address`` as its envelope sender (submission)?"""
        try:
            a = parse_address(address).canonical
        except AddressError:
            return False
        if a == account:
            return True
        lp, domain = a.rsplit("@", 1)
        if "+" in lp and lp.split("+", 1)[0] + "@" + domain == account:
            return True
        if self.alias_targets(a):
            return account in self.expand(a).local
        return False


def _checked_domain(domain: str) -> str:
    try:
        d = canonical_domain(domain)
    except AddressError as exc:
        raise OperationalError(f"bad domain {domain}: {exc}") from None
    if d.startswith("["):
        raise OperationalError(f"bad domain {domain}: an address literal cannot be a domain")
    return d


def _checked_address(address: str) -> str:
    try:
        a = parse_address(address)
    except AddressError as exc:
        raise OperationalError(f"bad address {address}: {exc}") from None
    if a.domain.startswith("["):
        raise OperationalError(f"bad address {address}: an address literal is not allowed here")
    return a.canonical
