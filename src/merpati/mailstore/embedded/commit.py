"""Durable appends with group commit.

An append is prepared by its caller in a worker thread (content written to ``tmp/``, not yet
fsynced; structure scanned) and handed to the ``GroupCommitter``. The committer runs one batch
at a time in a worker thread: it fsyncs every pending file, then per account opens one
``BEGIN IMMEDIATE`` transaction that checks quota, allocates UIDs, renames the files into
``new/`` or ``cur/``, fsyncs each touched directory once and COMMITs once (synchronous=FULL).
While a batch runs, new appends queue up and form the next batch, so N concurrent deliveries
cost about one fsync round instead of N. With ``enabled=False`` every append commits alone
(the baseline the benchmark compares against).

Only after COMMIT does an append's future resolve: then the message survives a power cut.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import defaultdict
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from merpati.mailstore.api import (
    AppendResult,
    MailStoreError,
    NoSuchFolder,
    QuotaExceeded,
    StorageFailure,
    TooManyKeywords,
)
from merpati.mailstore.embedded.account import Account
from merpati.mailstore.embedded.index import transaction
from merpati.mailstore.embedded.layout import filename, sync_dirs, sync_many, unlink_if_there
from merpati.mailstore.embedded.sync import FolderRow, assign_keywords, dir_mtimes, folder_row


@dataclass(slots=True)
class AppendJob:
    account: Account
    folder: str
    tmp: str  # the file in the folder's tmp/
    fd: int | None  # open descriptor to fsync (None: a hard link of another job's file)
    base: str
    size: int
    flags: frozenset[str]
    internaldate: float
    tz: int
    structure: bytes
    limit: int | None  # quota in bytes, looked up when the job was prepared
    key: str | None = None  # idempotency key of a delivery (MailStore.deliver)


Outcome = AppendResult | MailStoreError
KEY_SECONDS = 2 * 86400  # how long a delivery key is remembered (MailStore.deliver)
# Threads that commit the accounts of one batch side by side.
_ACCOUNT_POOL = ThreadPoolExecutor(8, thread_name_prefix="mailstore-account")


def commit_batch(jobs: list[AppendJob]) -> list[Outcome]:
    """Blocking: make every job durable and visible, or fail it. Runs in a worker thread."""
    outcomes: dict[int, Outcome] = {}
    fds = [(i, job.fd) for i, job in enumerate(jobs) if job.fd is not None]
    try:
        sync_many([fd for _, fd in fds])
    except OSError:
        for i, _ in fds:
            outcomes[i] = StorageFailure("the message could not be written")
    finally:
        for i, fd in fds:
            os.close(fd)
            jobs[i].fd = None
    by_account: dict[int, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        if i not in outcomes:
            by_account[id(job.account)].append(i)
    groups = [[(i, jobs[i]) for i in indexes] for indexes in by_account.values()]
    if len(groups) > 1:
        # Each account has its own index and lock: their commits (a directory fsync and a
        # WAL fsync each) overlap instead of queueing one behind another, which is what a
        # message to five local recipients waited on.
        for result in _ACCOUNT_POOL.map(_commit_account, groups):
            outcomes.update(result)
    elif groups:
        outcomes.update(_commit_account(groups[0]))
    for i, job in enumerate(jobs):
        if not isinstance(outcomes[i], AppendResult):
            unlink_if_there(job.tmp)
    return [outcomes[i] for i in range(len(jobs))]


def _commit_account(jobs: list[tuple[int, AppendJob]]) -> dict[int, Outcome]:
    account = jobs[0][1].account
    outcomes: dict[int, Outcome] = {}
    placed: list[tuple[str, str]] = []
    duplicates: list[str] = []
    keyed = False
    with account.wlock:
        w = account._writer()
        try:
            with transaction(w):
                used = int(w.execute("SELECT value FROM meta WHERE key = 'used'").fetchone()[0])
                state: dict[str, list[int]] = {}  # folder -> [id, uidvalidity, uidnext, modseq]
                rows: dict[str, FolderRow] = {}
                dirs: set[str] = set()
                now = time.time()
                for i, job in jobs:
                    if job.key is not None:
                        seen = w.execute(
                            "SELECT uidvalidity, uid, modseq FROM delivery_keys WHERE key = ?",
                            (job.key,),
                        ).fetchone()
                        if seen is not None:  # delivered before a crash: not twice
                            outcomes[i] = AppendResult(*seen)
                            duplicates.append(job.tmp)
                            continue
                    row = rows.get(job.folder) or folder_row(w, job.folder)
                    if row is None:
                        outcomes[i] = NoSuchFolder(f"no folder named {job.folder}")
                        continue
                    rows[job.folder] = row
                    if job.limit is not None and used + job.size > job.limit:
                        outcomes[i] = QuotaExceeded("mailbox is full")
                        continue
                    if job.flags:
                        try:  # raises before it writes anything: the batch goes on
                            letters = assign_keywords(w, account.root, row, job.flags)
                        except TooManyKeywords as exc:
                            outcomes[i] = exc
                            continue
                        rel = "cur/" + filename(job.base, job.size, job.flags, letters)
                    else:
                        rel = "new/" + filename(job.base, job.size, None)
                    st = state.setdefault(
                        job.folder, [row.id, row.uidvalidity, row.uidnext, row.highestmodseq]
                    )
                    uid, modseq = st[2], st[3] + 1
                    st[2], st[3] = uid + 1, modseq
                    final = f"{account.root_str}/{row.dirname}/{rel}"
                    os.rename(job.tmp, final)
                    placed.append((job.tmp, final))
                    dirs.add(os.path.dirname(final))
                    w.execute(
                        "INSERT INTO messages (folder, uid, modseq, flags, seen, recent,"
                        " internaldate, tz, size, uidl, path) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            row.id,
                            uid,
                            modseq,
                            " ".join(sorted(job.flags)),
                            "\\Seen" in job.flags,
                            True,  # \Recent until its flags change (rfc3501:2.3.2)
                            job.internaldate,
                            job.tz,
                            job.size,
                            job.base,
                            rel,
                        ),
                    )
                    w.execute(
                        "INSERT INTO structures (folder, uid, data) VALUES (?, ?, ?)",
                        (row.id, uid, job.structure),
                    )
                    used += job.size
                    outcomes[i] = AppendResult(row.uidvalidity, uid, modseq)
                    if job.key is not None:
                        w.execute(
                            "INSERT INTO delivery_keys (key, at, uidvalidity, uid, modseq)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (job.key, now, row.uidvalidity, uid, modseq),
                        )
                        keyed = True
                sync_dirs(sorted(dirs))
                for name, (fid, _, uidnext, modseq) in state.items():
                    new_mtime, cur_mtime = dir_mtimes(account.root / rows[name].dirname)
                    w.execute(
                        "UPDATE folders SET uidnext = ?, highestmodseq = ?, new_mtime = ?,"
                        " cur_mtime = ? WHERE id = ?",
                        (uidnext, modseq, new_mtime, cur_mtime, fid),
                    )
                w.execute("UPDATE meta SET value = ? WHERE key = 'used'", (used,))
                if keyed:
                    w.execute("DELETE FROM delivery_keys WHERE at < ?", (now - KEY_SECONDS,))
        except (OSError, sqlite3.Error):
            for tmp, final in reversed(placed):
                try:
                    os.rename(final, tmp)
                except OSError:
                    pass
            return {i: StorageFailure("the message could not be stored") for i, _ in jobs}
    for tmp in duplicates:
        unlink_if_there(tmp)
    return outcomes


class GroupCommitter:
    """Queues prepared appends and commits them in batches (one batch in flight at a time)."""

    def __init__(self, executor: Executor, enabled: bool = True) -> None:
        self._executor = executor  # the store's pool (per-append commits when disabled)
        # Batches get their own thread: queued behind the pool's preparations (100 writers
        # of 10 MB each) a batch, and with it every waiting append, would stall.
        self._batch_thread = ThreadPoolExecutor(1, thread_name_prefix="mailstore-commit")
        self.enabled = enabled
        self._pending: list[tuple[AppendJob, asyncio.Future[Outcome]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, jobs: list[AppendJob]) -> list[Outcome]:
        """Commit ``jobs`` (in one batch with whatever else is pending); one outcome each."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self._executor, commit_batch, jobs)
        futures = [loop.create_future() for _ in jobs]
        self._pending.extend(zip(jobs, futures, strict=True))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await loop.run_in_executor(
                    self._batch_thread, commit_batch, [job for job, _ in batch]
                )
            except Exception:
                outcomes = [StorageFailure("the message could not be stored")] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def drain(self) -> None:
        if self._runner is not None:
            await asyncio.shield(self._runner)

    def shutdown(self) -> None:
        self._batch_thread.shutdown(wait=True)
