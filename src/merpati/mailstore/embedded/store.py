"""``EmbeddedMailStore``: Maildir++ content and per-account SQLite indexes under
``<data_dir>/mail/`` (``merpati.mailstore.api.MailStore``).

Accounts are opened lazily on first use (their Maildir and default folders created, orphaned
tmp/ files removed, the index built or rebuilt from the Maildir when needed) and stay open
until ``close``. One thread pool runs all blocking work; one group committer batches appends
and deliveries of all accounts; one change feed serves every IDLE waiter. Safe to run in two
processes on one data dir at once (SQLite locking decides the order of writers).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from merpati.mailstore.api import (
    AppendResult,
    Delivery,
    DeliveryResults,
    DeliveryTarget,
    MailStoreError,
    StorageFailure,
)
from merpati.mailstore.embedded.account import Account
from merpati.mailstore.embedded.commit import AppendJob, GroupCommitter, Outcome
from merpati.mailstore.embedded.feed import POLL_INTERVAL, ChangeFeed
from merpati.mailstore.embedded.layout import account_dir, new_basename
from merpati.mailstore.embedded.mailbox import (
    EmbeddedMailbox,
    _prepare,
    link_job,
    local_tz_minutes,
)
from merpati.mailstore.embedded.snapshots import DEFAULT_BUDGET, SnapshotCache
from merpati.mailstore.embedded.sync import FolderRow
from merpati.mailstore.names import normalise_flags, normalise_folder

QuotaLookup = Callable[[str], "int | None"]
WORKERS = 8  # threads for file and SQLite work (fsync waits, not CPU, is what they do)
# Accounts whose index connections stay open (two connections, up to six descriptors each);
# idle ones beyond this are released and reopened on their next use.
MAX_OPEN_ACCOUNTS = 128
# Seconds between checks that an open account's index is still the file on disk.
IDENTITY_CHECK_INTERVAL = 2.0


class EmbeddedMailStore:
    def __init__(
        self,
        data_dir: Path,
        quota_lookup: QuotaLookup | None = None,
        *,
        group_commit: bool = True,
        workers: int = WORKERS,
        poll_interval: float = POLL_INTERVAL,
        snapshot_budget: int = DEFAULT_BUDGET,
        max_open_accounts: int = MAX_OPEN_ACCOUNTS,
    ) -> None:
        self.mail_root = Path(data_dir) / "mail"
        self.quota_lookup: QuotaLookup = quota_lookup or (lambda account: None)
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="mailstore")
        self.committer = GroupCommitter(self.executor, enabled=group_commit)
        self._order = itertools.count(1)
        self._preparing: set[int] = set()  # deliveries not yet handed to the committer
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Condition] = {}
        self.feed = ChangeFeed(self.executor, self.mail_root, poll_interval)
        self.snapshots = SnapshotCache(snapshot_budget)
        self.max_open = max_open_accounts
        self._connected = 0
        self._accounts: dict[str, Account] = {}
        self._opening: dict[str, asyncio.Future[Account]] = {}
        self._mailboxes: dict[str, EmbeddedMailbox] = {}

    def mailbox(self, account: str) -> EmbeddedMailbox:
        box = self._mailboxes.get(account)
        if box is None:
            box = self._mailboxes[account] = EmbeddedMailbox(self, account)
        return box

    async def open_account(self, account: str) -> Account:
        acct = self._accounts.get(account)
        if acct is not None and time.monotonic() - acct.checked > IDENTITY_CHECK_INTERVAL:
            acct.checked = time.monotonic()
            if acct.current_index_id() != acct.index_id:
                # Removed (and maybe re-created) or rebuilt by another process: start afresh.
                del self._accounts[account]
                self.snapshots.drop(account)
                asyncio.get_running_loop().run_in_executor(self.executor, acct.close)
                acct = None
        if acct is not None:
            if not acct.connected:
                self._connected += 1
                self._evict()
            return acct
        pending = self._opening.get(account)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Account] = loop.create_future()
        self._opening[account] = future
        try:
            acct = Account(account, account_dir(self.mail_root, account), self.snapshots)
            await loop.run_in_executor(self.executor, acct.open)
            self._accounts[account] = acct
            self._connected += 1
            self._evict()
            future.set_result(acct)
            return acct
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._opening[account]

    def _evict(self) -> None:
        """Keep at most ``max_open`` accounts' index connections open (each costs a few file
        descriptors): release the least recently used ones beyond that, in the background.
        ``_connected`` is an estimate, recounted here."""
        if self._connected <= self.max_open:
            return
        open_accounts = [a for a in self._accounts.values() if a.connected]
        self._connected = len(open_accounts)
        excess = len(open_accounts) - self.max_open
        if excess <= 0:
            return
        open_accounts.sort(key=lambda a: a.last_used)
        loop = asyncio.get_running_loop()
        for acct in open_accounts[: excess + self.max_open // 4]:  # some slack: fewer sweeps
            loop.run_in_executor(self.executor, acct.release)
        self._connected = self.max_open - self.max_open // 4

    async def create_account(self, account: str) -> None:
        await self.open_account(account)

    async def remove_account(self, account: str) -> None:
        loop = asyncio.get_running_loop()
        acct = self._accounts.pop(account, None)
        if acct is not None:
            await loop.run_in_executor(self.executor, acct.close)
        self.snapshots.drop(account)
        self.feed.notify(account)
        root = account_dir(self.mail_root, account)
        if root.exists():
            trash = self.mail_root / f".removed-{new_basename()}"
            os.rename(root, trash)
            await loop.run_in_executor(self.executor, shutil.rmtree, trash, True)

    async def deliver(
        self,
        data: bytes,
        targets: Sequence[DeliveryTarget],
        internaldate: float | None = None,
        key: str | None = None,
    ) -> DeliveryResults:
        """One copy of the content, hard-linked into every target; one group commit.
        Shielded from cancellation like ``append``."""
        return (await self.deliver_many([Delivery(data, targets, key, internaldate)]))[0]

    async def deliver_many(self, deliveries: Sequence[Delivery]) -> list[DeliveryResults]:
        """Every delivery prepared in one worker call and committed in one group commit (the
        intake journal hands its messages over in groups: a worker call and a gate passage
        per message cost more than the work)."""
        order = next(self._order)  # before any await: the order deliveries were asked for
        self._preparing.add(order)
        return await asyncio.shield(self._deliver(order, deliveries))

    def _gate(self) -> asyncio.Condition:
        """The condition of the running loop (a store may outlive one ``asyncio.run``)."""
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            self._gates = {loop: (gate := asyncio.Condition())}
        return gate

    async def _submit_in_order(self, order: int, jobs: list[AppendJob]) -> list[Outcome]:
        """Hand jobs to the committer only after every earlier delivery has handed in its
        own: they are prepared side by side in worker threads and finish in any order, but
        a mailbox's UIDs should follow the order the messages arrived in."""
        gate = self._gate()
        async with gate:
            await gate.wait_for(lambda: min(self._preparing) == order)
            # A task starts in creation order, so the committer queues the jobs in order.
            task = asyncio.ensure_future(self.committer.submit(jobs))
        await self._release(order)
        return await task

    async def _release(self, order: int) -> None:
        """Delivery ``order`` has handed its jobs in, or never will: let later ones go."""
        gate = self._gate()
        async with gate:
            self._preparing.discard(order)
            gate.notify_all()

    async def _deliver(self, order: int, deliveries: Sequence[Delivery]) -> list[DeliveryResults]:
        try:
            loop = asyncio.get_running_loop()
            now = time.time()
            results: list[list[AppendResult | MailStoreError | None]] = [
                [None] * len(d.targets) for d in deliveries
            ]
            # (delivery, target, account, folder, flags, quota) for every target to prepare
            plans: list[tuple[int, int, Account, str, frozenset[str], int | None]] = []
            # A group's targets repeat (the same accounts, INBOX): each looked up once.
            accounts: dict[str, tuple[Account, int | None]] = {}
            folders: dict[str, str] = {}
            for di, delivery in enumerate(deliveries):
                for ti, target in enumerate(delivery.targets):
                    try:
                        folder = folders.get(target.folder)
                        if folder is None:
                            folder = folders[target.folder] = normalise_folder(target.folder)
                        known = accounts.get(target.account)
                        if known is None:
                            acct = await self.open_account(target.account)
                            known = accounts[target.account] = (
                                acct,
                                self.quota_lookup(target.account),
                            )
                        acct, limit = known
                        flags = normalise_flags(target.flags) if target.flags else frozenset()
                        plans.append((di, ti, acct, folder, flags, limit))
                    except MailStoreError as exc:
                        results[di][ti] = exc
                    except (OSError, sqlite3.Error):
                        results[di][ti] = StorageFailure("the message could not be stored")

            def prepare_all() -> list[tuple[int, int, AppendJob | MailStoreError]]:
                """For each delivery, the first target writes (and scans) the file and the
                others hard-link it."""
                out: list[tuple[int, int, AppendJob | MailStoreError]] = []
                first: dict[int, AppendJob] = {}
                rows: dict[tuple[int, str], FolderRow] = {}  # read once per batch
                for di, ti, acct, folder, flags, limit in plans:
                    delivery = deliveries[di]
                    try:
                        row = rows.get((id(acct), folder))
                        if row is None:
                            row = rows[id(acct), folder] = acct.row(folder)
                        if di not in first:
                            date = now if delivery.internaldate is None else delivery.internaldate
                            tz = local_tz_minutes(date)
                            job = _prepare(
                                acct, folder, delivery.data, flags, date, tz, limit, None, row
                            )
                            first[di] = job
                        else:
                            job = link_job(acct, folder, first[di], flags, limit, row)
                        job.key = delivery.key
                        out.append((di, ti, job))
                    except MailStoreError as exc:
                        out.append((di, ti, exc))
                    except Exception:  # this message's failure only, not its group's
                        out.append((di, ti, StorageFailure("the message could not be stored")))
                return out

            jobs: list[tuple[int, int, AppendJob]] = []
            if plans:
                for di, ti, prepared in await loop.run_in_executor(self.executor, prepare_all):
                    if isinstance(prepared, AppendJob):
                        jobs.append((di, ti, prepared))
                    else:
                        results[di][ti] = prepared
            if jobs:
                outcomes = await self._submit_in_order(order, [job for _, _, job in jobs])
                for (di, ti, job), outcome in zip(jobs, outcomes, strict=True):
                    results[di][ti] = outcome
                    if isinstance(outcome, AppendResult):
                        self.feed.notify(job.account.account, job.folder)
            return [
                [r if r is not None else StorageFailure("not stored") for r in per]
                for per in results
            ]
        finally:
            if order in self._preparing:  # failed before reaching the committer
                await self._release(order)

    async def close(self) -> None:
        await self.committer.drain()
        self.feed.flush()
        loop = asyncio.get_running_loop()
        for acct in list(self._accounts.values()):
            await loop.run_in_executor(self.executor, acct.close)
        self._accounts.clear()
        self.committer.shutdown()
        self.executor.shutdown(wait=True)
