"""The change feed: wakes IMAP IDLE (``wait_for_change``) when a folder changes.

Changes made through this process wake waiters at once (``notify``), and touch this process's
marker file ``<mail>/.changes/<host>-<pid>``. Changes made elsewhere are found by one poller
per store, which runs only while someone waits:

- every ``interval``: if another process's marker moved (a second ``merpati serve`` on the
  same data dir, the CLI), the index WAL file of each waited account is stat'ed and the
  accounts whose index moved are woken; with a single process this is one small directory
  listing;
- every ``DIR_POLL_INTERVAL``: the waited folders' ``new/`` and ``cur/`` mtimes are compared
  with what the poller saw last (two stats per folder); a folder whose directories moved is
  synced (mail another program dropped into ``new/``) and its waiters woken.

A woken waiter re-reads its folder's HIGHESTMODSEQ; spurious wake-ups are harmless.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
from collections import defaultdict
from concurrent.futures import Executor
from pathlib import Path

from merpati.mailstore.api import MailStoreError
from merpati.mailstore.embedded.account import Account
from merpati.mailstore.embedded.sync import dir_mtimes

POLL_INTERVAL = 0.3  # seconds between checks for other processes' commits
DIR_POLL_INTERVAL = 1.0  # seconds between Maildir directory checks for dropped-in mail
MARKERS = ".changes"
TOUCH_DELAY = 0.05  # seconds: marker updates are batched (pollers look every POLL_INTERVAL)


class ChangeFeed:
    def __init__(
        self, executor: Executor, mail_root: Path, interval: float = POLL_INTERVAL
    ) -> None:
        self._executor = executor
        self._interval = interval
        self._markers = mail_root / MARKERS
        self._own = f"{socket.gethostname()}-{os.getpid()}"
        self._touch_pending = False
        self._seen_markers: dict[str, int] = {}
        # account -> folder -> event; waiter counts per (account, folder).
        self._events: dict[str, dict[str, asyncio.Event]] = defaultdict(dict)
        self._waiters: dict[tuple[str, str], int] = defaultdict(int)
        self._accounts: dict[str, Account] = {}
        self._versions: dict[str, tuple[int, int]] = {}
        self._dirs: dict[tuple[str, str], tuple[Path, tuple[int, int]]] = {}
        self._poller: asyncio.Task[None] | None = None

    # -- this process ------------------------------------------------------------------------
    def notify(self, account: str, folder: str | None = None) -> None:
        """A change was committed through this process: wake waiters on ``folder`` of
        ``account`` (all its folders when None) and tell other processes."""
        self._wake(account, folder)
        if not self._touch_pending:
            # Coalesced: at most one marker update per TOUCH_DELAY, always after the change.
            self._touch_pending = True
            asyncio.get_running_loop().call_later(TOUCH_DELAY, self._touch)

    def _wake(self, account: str, folder: str | None) -> None:
        events = self._events.get(account)
        if not events:
            return
        if folder is None:
            for ev in events.values():
                ev.set()
            events.clear()
        else:
            if folder in events:
                events.pop(folder).set()

    def flush(self) -> None:
        """Publish a pending marker update now (the store is closing)."""
        if self._touch_pending:
            self._touch()

    def _touch(self) -> None:
        self._touch_pending = False
        path = self._markers / self._own
        try:
            os.utime(path)
        except FileNotFoundError:
            try:
                self._markers.mkdir(parents=True, exist_ok=True)
                path.touch()
            except OSError:
                pass
        except OSError:
            pass

    # -- waiting -----------------------------------------------------------------------------
    def event(self, account: Account, folder: str) -> asyncio.Event:
        events = self._events[account.account]
        ev = events.get(folder)
        if ev is None:
            ev = events[folder] = asyncio.Event()
        self._accounts[account.account] = account
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return ev

    def waiting(self, account: str, folder: str, delta: int) -> None:
        key = (account, folder)
        self._waiters[key] += delta
        if self._waiters[key] <= 0:
            del self._waiters[key]
            self._dirs.pop(key, None)
            if not any(k[0] == account for k in self._waiters):
                self._accounts.pop(account, None)
                self._versions.pop(account, None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        elapsed = 0.0
        while self._waiters:
            await asyncio.sleep(self._interval)
            elapsed += self._interval
            check_dirs = elapsed >= DIR_POLL_INTERVAL
            if check_dirs:
                elapsed = 0.0
            keys = list(self._waiters)
            accounts = dict(self._accounts)
            try:
                woken = await loop.run_in_executor(
                    self._executor, self._check, keys, accounts, check_dirs
                )
            except RuntimeError:  # the executor was shut down: the store is closing
                return
            for account, folder in woken:
                self._wake(account, folder)

    # -- worker thread ---------------------------------------------------------------------
    def _others_moved(self) -> bool:
        moved = False
        try:
            entries = list(os.scandir(self._markers))
        except FileNotFoundError:
            return False
        for entry in entries:
            if entry.name == self._own:
                continue
            try:
                mtime = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if self._seen_markers.get(entry.name) != mtime:
                self._seen_markers[entry.name] = mtime
                moved = True
        return moved

    def _check(
        self, keys: list[tuple[str, str]], accounts: dict[str, Account], check_dirs: bool
    ) -> set[tuple[str, str | None]]:
        woken: set[tuple[str, str | None]] = set()
        sweep = self._others_moved()
        for name, acct in accounts.items():
            if not sweep and name in self._versions:
                continue
            version = acct.index_stamp()
            # A new baseline wakes too: a change may have landed just before it was taken.
            if self._versions.get(name) != version:
                woken.add((name, None))
            self._versions[name] = version
        if check_dirs:
            for key in keys:
                account = accounts.get(key[0])
                if account is None:
                    continue
                try:
                    known = self._dirs.get(key)
                    if known is None:
                        # Baseline: sync against the index first (a drop may predate it).
                        folder_dir = account.folder_dir(key[1])
                        mtimes = dir_mtimes(folder_dir)
                        account.fresh_row(key[1])
                        self._dirs[key] = (folder_dir, mtimes)
                        woken.add(key)
                        continue
                    folder_dir, mtimes = known
                    now = dir_mtimes(folder_dir)
                    if now != mtimes:
                        self._dirs[key] = (folder_dir, now)
                        account.fresh_row(key[1])  # picks up dropped-in mail
                        woken.add(key)
                except (MailStoreError, OSError, sqlite3.Error):
                    self._dirs.pop(key, None)
                    woken.add(key)
        return woken
