"""``EmbeddedMailbox``: the async face of one account (``merpati.mailstore.api.Mailbox``).

Every blocking call (SQLite, file I/O, fsync) runs in the store's thread pool; the event loop
only awaits. Names are normalised here (``merpati.mailstore.names``) before any work; changes
wake the change feed once the work has been committed.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from merpati.mailstore.api import (
    AppendResult,
    Changes,
    CopyResult,
    FlagMode,
    FolderInfo,
    InvalidName,
    MessageInfo,
    QuotaExceeded,
    StorageFailure,
)
from merpati.mailstore.embedded import changes
from merpati.mailstore.embedded.account import Account
from merpati.mailstore.embedded.commit import AppendJob
from merpati.mailstore.embedded.layout import (
    filename,
    new_basename,
    unlink_if_there,
    write_file,
)
from merpati.mailstore.embedded.sync import FolderRow
from merpati.mailstore.names import is_under, normalise_flags, normalise_folder
from merpati.mime import serial
from merpati.mime.scan import scan
from merpati.mime.structure import MessageStructure

if TYPE_CHECKING:
    from merpati.mailstore.embedded.store import EmbeddedMailStore

T = TypeVar("T")
OWN_FSYNC_SIZE = 1_000_000  # bytes from which a message's writer fsyncs it itself


def local_tz_minutes(when: float) -> int:
    offset = time.localtime(when).tm_gmtoff
    return int(offset // 60) if offset is not None else 0


class EmbeddedMailbox:
    def __init__(self, store: EmbeddedMailStore, account: str) -> None:
        self.account = account
        self._store = store

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            acct = await self._store.open_account(self.account)
            return await loop.run_in_executor(self._store.executor, fn, acct, *args)
        except (OSError, sqlite3.Error) as exc:
            # Disk full, permissions, a damaged file: the operation did not happen.
            raise StorageFailure("the mail store could not complete the operation") from exc

    def _notify(self, folder: str | None = None) -> None:
        self._store.feed.notify(self.account, folder)

    # -- folders ----------------------------------------------------------------------------
    async def folders(self) -> list[FolderInfo]:
        return await self._call(Account.folders)

    async def folder(self, name: str) -> FolderInfo:
        return await self._call(Account.folder, normalise_folder(name))

    async def create_folder(self, name: str, special_use: str | None = None) -> None:
        await self._call(Account.create_folder, normalise_folder(name), special_use)

    async def delete_folder(self, name: str) -> None:
        await self._call(Account.delete_folder, normalise_folder(name))
        self._notify()

    async def rename_folder(self, old: str, new: str) -> None:
        src, dst = normalise_folder(old), normalise_folder(new)
        if dst == src or (is_under(dst, src) and src != "INBOX"):
            raise InvalidName("a folder cannot be renamed into itself")
        await self._call(Account.rename_folder, src, dst)
        self._notify()

    async def subscribe(self, name: str, subscribed: bool) -> None:
        await self._call(Account.subscribe, normalise_folder(name), subscribed)

    async def subscriptions(self) -> list[str]:
        return await self._call(Account.subscriptions)

    # -- appends --------------------------------------------------------------------------------
    def _limit(self) -> int | None:
        return self._store.quota_lookup(self.account)

    async def append(
        self,
        folder: str,
        data: bytes,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
        internaldate_tz: int | None = None,
    ) -> AppendResult:
        # Shielded: a caller cancelled mid-way (client gone) must not strand a half-prepared
        # file or an open descriptor; the append then completes (or fails) on its own.
        return await asyncio.shield(
            self._append(folder, data, flags, internaldate, internaldate_tz)
        )

    async def _append(
        self,
        folder: str,
        data: bytes,
        flags: Iterable[str],
        internaldate: float | None,
        internaldate_tz: int | None,
    ) -> AppendResult:
        name = normalise_folder(folder)
        limit = self._limit()
        date = time.time() if internaldate is None else internaldate
        tz = local_tz_minutes(date) if internaldate_tz is None else internaldate_tz
        job = await self._call(_prepare, name, data, normalise_flags(flags), date, tz, limit, None)
        (outcome,) = await self._store.committer.submit([job])
        if isinstance(outcome, Exception):
            raise outcome
        self._notify(name)
        return outcome

    async def append_many(
        self, folder: str, items: Sequence[tuple[bytes, Iterable[str], float | None]]
    ) -> list[AppendResult]:
        """Bulk append (import): UIDs in the order given, one group commit for all. Raises the
        first error after the others are committed (e.g. QuotaExceeded)."""
        return await asyncio.shield(self._append_many(folder, items))

    async def _append_many(
        self, folder: str, items: Sequence[tuple[bytes, Iterable[str], float | None]]
    ) -> list[AppendResult]:
        name = normalise_folder(folder)
        limit = self._limit()
        prepared = [
            (data, normalise_flags(flags), time.time() if date is None else date)
            for data, flags, date in items
        ]
        jobs = await self._call(_prepare_many, name, prepared, limit)
        outcomes = await self._store.committer.submit(jobs)
        self._notify(name)
        results: list[AppendResult] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            results.append(outcome)
        return results

    # -- reading --------------------------------------------------------------------------------
    async def messages(self, folder: str) -> list[MessageInfo]:
        return await self._call(Account.messages, normalise_folder(folder))

    async def message_map(self, folder: str) -> dict[int, MessageInfo]:
        return await self._call(Account.message_map, normalise_folder(folder))

    async def changes_since(self, folder: str, modseq: int) -> Changes:
        return await self._call(Account.changes_since, normalise_folder(folder), modseq)

    async def read(self, folder: str, uid: int) -> bytes:
        return await self._call(Account.read, normalise_folder(folder), uid)

    async def structure(self, folder: str, uid: int) -> MessageStructure:
        return await self._call(Account.structure, normalise_folder(folder), uid)

    async def structures(self, folder: str, uids: Sequence[int]) -> dict[int, MessageStructure]:
        return await self._call(Account.structures, normalise_folder(folder), list(uids))

    # -- changes ---------------------------------------------------------------------------------
    async def store_flags(
        self,
        folder: str,
        uids: Sequence[int],
        mode: FlagMode,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        name = normalise_folder(folder)
        result = await self._call(
            changes.store_flags,
            name,
            list(uids),
            mode.value,
            normalise_flags(flags),
            unchanged_since,
        )
        if result[0]:
            self._notify(name)
        return result

    async def copy(self, src: str, uids: Sequence[int], dst: str) -> CopyResult:
        s, d = normalise_folder(src), normalise_folder(dst)
        uidvalidity, pairs = await self._call(
            changes.transfer, s, list(uids), d, False, self._limit()
        )
        if pairs:
            self._notify(d)
        return CopyResult(uidvalidity, tuple(pairs))

    async def move(self, src: str, uids: Sequence[int], dst: str) -> CopyResult:
        s, d = normalise_folder(src), normalise_folder(dst)
        uidvalidity, pairs = await self._call(changes.transfer, s, list(uids), d, True, None)
        if pairs:
            self._notify(s)
            self._notify(d)
        return CopyResult(uidvalidity, tuple(pairs))

    async def expunge(self, folder: str, uids: Sequence[int] | None = None) -> list[int]:
        name = normalise_folder(folder)
        gone = await self._call(changes.expunge, name, None if uids is None else list(uids))
        if gone:
            self._notify(name)
        return gone

    async def quota(self) -> tuple[int, int | None]:
        return await self._call(Account.used), self._limit()

    async def wait_for_change(self, folder: str, after_modseq: int, timeout: float) -> int:
        name = normalise_folder(folder)
        try:
            acct = await self._store.open_account(self.account)
        except (OSError, sqlite3.Error) as exc:
            raise StorageFailure("the mail store could not complete the operation") from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        feed = self._store.feed
        feed.waiting(self.account, name, +1)
        try:
            while True:
                ev = feed.event(acct, name)
                current = await self._call(Account.highestmodseq, name)
                remaining = deadline - loop.time()
                if current > after_modseq or remaining <= 0:
                    return current
                try:
                    await asyncio.wait_for(ev.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            feed.waiting(self.account, name, -1)


def _prepare(
    account: Account,
    folder: str,
    data: bytes,
    flags: frozenset[str],
    internaldate: float,
    tz: int,
    limit: int | None,
    structure: bytes | None,
    row: FolderRow | None = None,
) -> AppendJob:
    """Worker thread: check the folder and quota, scan, write the content to tmp/. ``row``:
    the folder's row when the caller has just read it."""
    if row is None:
        row = account.row(folder)  # NoSuchFolder before any byte is written
    if limit is not None and account.used() + len(data) > limit:
        raise QuotaExceeded("mailbox is full")
    blob = structure if structure is not None else serial.dumps(scan(data))
    base = new_basename()
    tmp = f"{account.root_str}/{row.dirname}/tmp/{filename(base, len(data), None)}"
    fd: int | None = write_file(tmp, data, internaldate)
    if fd is not None and len(data) >= OWN_FSYNC_SIZE:
        # A big file is synced by its own writer thread, in parallel with the others; the
        # batch then only renames and commits it.
        try:
            os.fsync(fd)
        except OSError:
            unlink_if_there(tmp)
            raise
        finally:
            os.close(fd)
        fd = None
    return AppendJob(
        account, folder, tmp, fd, base, len(data), flags, internaldate, tz, blob, limit
    )


def _prepare_many(
    account: Account,
    folder: str,
    items: list[tuple[bytes, frozenset[str], float]],
    limit: int | None,
) -> list[AppendJob]:
    jobs: list[AppendJob] = []
    try:
        for data, flags, date in items:
            jobs.append(
                _prepare(account, folder, data, flags, date, local_tz_minutes(date), limit, None)
            )
    except BaseException:
        for job in jobs:
            if job.fd is not None:
                os.close(job.fd)
            unlink_if_there(job.tmp)
        raise
    return jobs


def link_job(
    account: Account,
    folder: str,
    first: AppendJob,
    flags: frozenset[str],
    limit: int | None,
    row: FolderRow | None = None,
) -> AppendJob:
    """Worker thread: a job for another account whose tmp/ file is a hard link of ``first``'s."""
    if row is None:
        row = account.row(folder)
    if limit is not None and account.used() + first.size > limit:
        raise QuotaExceeded("mailbox is full")
    base = new_basename()  # its own UIDL, even when it lands in the same folder twice
    tmp = f"{account.root_str}/{row.dirname}/tmp/{filename(base, first.size, None)}"
    try:
        os.link(first.tmp, tmp)
        fd = None
    except OSError:
        with open(first.tmp, "rb") as f:
            fd = write_file(tmp, f.read(), first.internaldate)
    return AppendJob(
        account,
        folder,
        tmp,
        fd,
        first.base,
        first.size,
        flags,
        first.internaldate,
        first.tz,
        first.structure,
        limit,
    )
