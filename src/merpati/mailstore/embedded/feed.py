"""The change feed: wakes IMAP IDLE (``wait_for_change``) when a folder changes.

Changes made through this process wake waiters at once (``notify``). Changes made by another
process (a second ``merpati serve`` on the same data dir, the CLI) or by another program that
drops files into ``new/`` are found by one poller per store, which runs only while someone
waits: every ``interval`` it asks each waited account's index for ``PRAGMA data_version``
(which moves when any other connection committed) and every ``dir_interval`` it checks the
waited folders' directories (the cheap mtime check that triggers a pickup). A woken waiter
re-reads its folder's HIGHESTMODSEQ; spurious wake-ups are harmless.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import Executor

from merpati.mailstore.api import MailStoreError
from merpati.mailstore.embedded.account import Account

POLL_INTERVAL = 0.3  # seconds between index checks for other processes' commits
DIR_POLL_INTERVAL = 1.0  # seconds between Maildir directory checks for dropped-in mail


class ChangeFeed:
    def __init__(self, executor: Executor, interval: float = POLL_INTERVAL) -> None:
        self._executor = executor
        self._interval = interval
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._waiters: dict[tuple[str, str], int] = defaultdict(int)
        self._accounts: dict[str, Account] = {}
        self._versions: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None

    def notify(self, account: str, folder: str | None = None) -> None:
        """Wake waiters on ``folder`` of ``account`` (all its folders when None)."""
        for key in [k for k in self._events if k[0] == account and folder in (None, k[1])]:
            self._events.pop(key).set()

    def event(self, account: Account, folder: str) -> asyncio.Event:
        key = (account.account, folder)
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        self._accounts[account.account] = account
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return ev

    def waiting(self, account: str, folder: str, delta: int) -> None:
        key = (account, folder)
        self._waiters[key] += delta
        if self._waiters[key] <= 0:
            del self._waiters[key]

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
            changed = await loop.run_in_executor(self._executor, self._check, keys, check_dirs)
            for account in changed:
                self.notify(account)

    def _check(self, keys: list[tuple[str, str]], check_dirs: bool) -> set[str]:
        changed: set[str] = set()
        for name in {k[0] for k in keys}:
            account = self._accounts.get(name)
            if account is None:
                continue
            try:
                if check_dirs:
                    for key in keys:
                        if key[0] == name:
                            account.fresh_row(key[1])  # picks up dropped-in mail
                version = account.data_version()
            except (MailStoreError, AssertionError, OSError):
                changed.add(name)
                continue
            if self._versions.get(name) != version:  # the first sighting wakes too
                changed.add(name)
                self._versions[name] = version
        return changed
