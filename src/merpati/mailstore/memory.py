"""In-memory mail store: the reference semantics of ``merpati.mailstore.api`` and a fast
backend for protocol tests. Nothing is persisted; everything lives in dicts in this process.

Semantics shared with the embedded backend: accounts appear (with the default special-use
folders) on first use; UIDs ascend per folder and are never reused; every change bumps the
folder's HIGHESTMODSEQ and the changed message's MODSEQ; expunged UIDs are kept as tombstones
for ``changes_since`` (all of them, or the newest ``max_tombstones`` per folder, to exercise
QRESYNC without full expunge history); a message is \\Recent until its flags are first
changed; quota counts bytes across all folders of an account. It does not simulate crashes
or other processes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from merpati.mailstore.api import (
    DEFAULT_FOLDERS,
    MAX_FOLDER_KEYWORDS,
    AppendResult,
    Changes,
    CopyResult,
    Delivery,
    DeliveryResults,
    DeliveryTarget,
    FlagMode,
    FolderExists,
    FolderInfo,
    FolderNotEmpty,
    InvalidName,
    MailStoreError,
    MessageInfo,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
    TooManyKeywords,
)
from merpati.mailstore.names import (
    apply_flags,
    is_under,
    new_uidvalidity,
    normalise_flags,
    normalise_folder,
    parents,
)
from merpati.mime.scan import scan
from merpati.mime.structure import MessageStructure

QuotaLookup = Callable[[str], "int | None"]


@dataclass(slots=True)
class _Message:
    info: MessageInfo
    data: bytes
    structure: MessageStructure
    recent: bool


@dataclass(slots=True)
class _Folder:
    uidvalidity: int
    special_use: str | None
    subscribed: bool = True
    uidnext: int = 1
    highestmodseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)
    tombstones: list[tuple[int, int]] = field(default_factory=list)  # (modseq, uid)
    history_from: int = 0  # Changes.expunge_history_from: the newest forgotten tombstone
    keywords: set[str] = field(default_factory=set)  # every keyword used (MAX_FOLDER_KEYWORDS)

    def use_keywords(self, flags: Iterable[str]) -> None:
        new = {f for f in flags if not f.startswith("\\")} - self.keywords
        if new and len(self.keywords) + len(new) > MAX_FOLDER_KEYWORDS:
            raise TooManyKeywords(f"the folder uses {len(self.keywords)} keywords")
        self.keywords |= new

    changed: asyncio.Event | None = None

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def notify(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class MemoryMailbox:
    """One account's folders and messages."""

    def __init__(
        self, account: str, quota_lookup: QuotaLookup, max_tombstones: int | None = None
    ) -> None:
        self.account = account
        self._max_tombstones = max_tombstones
        self._quota_lookup = quota_lookup
        self._folders: dict[str, _Folder] = {}
        self._uidl = itertools.count(1)
        self._stamp = f"{new_uidvalidity():08x}"
        self._kept_subscriptions: set[str] = set()  # subscribed names of deleted folders
        for name, special in DEFAULT_FOLDERS:
            self._folders[name] = _Folder(new_uidvalidity(), special)

    # -- folders ---------------------------------------------------------------------------
    def _folder(self, name: str) -> _Folder:
        folder = self._folders.get(normalise_folder(name))
        if folder is None:
            raise NoSuchFolder(f"no folder named {name}")
        return folder

    def _info(self, name: str, f: _Folder) -> FolderInfo:
        msgs = f.messages.values()
        return FolderInfo(
            name=name,
            uidvalidity=f.uidvalidity,
            uidnext=f.uidnext,
            highestmodseq=f.highestmodseq,
            messages=len(f.messages),
            unseen=sum(1 for m in msgs if "\\Seen" not in m.info.flags),
            recent=sum(1 for m in msgs if m.recent),
            size=sum(m.info.size for m in msgs),
            special_use=f.special_use,
            subscribed=f.subscribed,
        )

    async def folders(self) -> list[FolderInfo]:
        return [self._info(n, f) for n, f in sorted(self._folders.items())]

    async def folder(self, name: str) -> FolderInfo:
        canonical = normalise_folder(name)
        return self._info(canonical, self._folder(canonical))

    async def create_folder(self, name: str, special_use: str | None = None) -> None:
        canonical = normalise_folder(name)
        if canonical in self._folders:
            raise FolderExists(f"folder {name} already exists")
        for parent in parents(canonical):
            if parent not in self._folders:
                self._folders[parent] = _Folder(new_uidvalidity(), None)
                self._kept_subscriptions.discard(parent)
        self._folders[canonical] = _Folder(new_uidvalidity(), special_use)
        self._kept_subscriptions.discard(canonical)

    async def delete_folder(self, name: str) -> None:
        canonical = normalise_folder(name)
        if canonical == "INBOX":
            raise InvalidName("INBOX cannot be deleted")
        folder = self._folder(canonical)
        if any(is_under(n, canonical) for n in self._folders):
            raise FolderNotEmpty(f"folder {name} has subfolders")
        del self._folders[canonical]
        if folder.subscribed:
            self._kept_subscriptions.add(canonical)  # rfc9051:6.3.7
        folder.notify()

    async def rename_folder(self, old: str, new: str) -> None:
        src, dst = normalise_folder(old), normalise_folder(new)
        folder = self._folder(src)
        if dst in self._folders:
            raise FolderExists(f"folder {new} already exists")
        if dst == src or (is_under(dst, src) and src != "INBOX"):
            raise InvalidName("a folder cannot be renamed into itself")
        for parent in parents(dst):
            if parent not in self._folders:
                self._folders[parent] = _Folder(new_uidvalidity(), None)
                self._kept_subscriptions.discard(parent)
        self._kept_subscriptions.discard(dst)
        if src == "INBOX":
            # rfc3501:6.3.5 renaming INBOX moves its messages and leaves it empty.
            moved = _Folder(new_uidvalidity(), None)
            for msg in folder.messages.values():
                self._store(
                    moved,
                    msg.data,
                    msg.structure,
                    msg.info.flags,
                    msg.info.internaldate,
                    msg.info.internaldate_tz,
                    msg.info.uidl,
                )
            for uid in list(folder.messages):
                self._tombstone(folder, uid)
            folder.messages.clear()
            self._folders[dst] = moved
            folder.notify()
            return
        for name in sorted(self._folders):
            if name == src or is_under(name, src):
                self._folders[dst + name[len(src) :]] = self._folders.pop(name)
                self._kept_subscriptions.discard(dst + name[len(src) :])
        folder.notify()

    async def subscribe(self, name: str, subscribed: bool) -> None:
        canonical = normalise_folder(name)
        if not subscribed and canonical in self._kept_subscriptions:
            self._kept_subscriptions.discard(canonical)
            return
        self._folder(canonical).subscribed = subscribed

    async def subscriptions(self) -> list[str]:
        names = {n for n, f in self._folders.items() if f.subscribed}
        return sorted(names | self._kept_subscriptions)

    # -- messages --------------------------------------------------------------------------
    def _tombstone(self, folder: _Folder, uid: int) -> None:
        folder.tombstones.append((folder.bump(), uid))
        limit = self._max_tombstones
        if limit is not None and len(folder.tombstones) > limit:
            dropped = folder.tombstones[: len(folder.tombstones) - limit]
            del folder.tombstones[: len(dropped)]
            folder.history_from = max(folder.history_from, dropped[-1][0])

    def _check_quota(self, extra: int) -> None:
        limit = self._quota_lookup(self.account)
        if limit is not None and self._used() + extra > limit:
            raise QuotaExceeded("mailbox is full")

    def _used(self) -> int:
        return sum(m.info.size for f in self._folders.values() for m in f.messages.values())

    def _store(
        self,
        folder: _Folder,
        data: bytes,
        structure: MessageStructure,
        flags: frozenset[str],
        internaldate: float,
        tz: int,
        uidl: str | None = None,
    ) -> AppendResult:
        folder.use_keywords(flags)
        uid = folder.uidnext
        folder.uidnext += 1
        modseq = folder.bump()
        info = MessageInfo(
            uid=uid,
            modseq=modseq,
            flags=flags,
            internaldate=internaldate,
            internaldate_tz=tz,
            size=len(data),
            uidl=uidl or f"{self._stamp}.{next(self._uidl)}",
        )
        folder.messages[uid] = _Message(info, data, structure, recent=True)
        folder.notify()
        return AppendResult(folder.uidvalidity, uid, modseq)

    async def append(
        self,
        folder: str,
        data: bytes,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
        internaldate_tz: int | None = None,
    ) -> AppendResult:
        target = self._folder(folder)
        self._check_quota(len(data))
        return self._store(
            target,
            bytes(data),
            scan(data),
            normalise_flags(flags),
            time.time() if internaldate is None else internaldate,
            _local_tz() if internaldate_tz is None else internaldate_tz,
        )

    async def append_many(
        self, folder: str, items: Sequence[tuple[bytes, Iterable[str], float | None]]
    ) -> list[AppendResult]:
        """Bulk append (import), UIDs in the order given."""
        return [await self.append(folder, data, flags, date) for data, flags, date in items]

    async def messages(self, folder: str) -> list[MessageInfo]:
        return [m.info for m in self._folder(folder).messages.values()]

    async def message_map(self, folder: str) -> dict[int, MessageInfo]:
        return {uid: m.info for uid, m in self._folder(folder).messages.items()}

    async def changes_since(self, folder: str, modseq: int) -> Changes:
        f = self._folder(folder)
        return Changes(
            highestmodseq=f.highestmodseq,
            changed=tuple(m.info for m in f.messages.values() if m.info.modseq > modseq),
            expunged=tuple(sorted(uid for ms, uid in f.tombstones if ms > modseq)),
            expunge_history_from=f.history_from,
        )

    def _message(self, folder: str, uid: int) -> _Message:
        msg = self._folder(folder).messages.get(uid)
        if msg is None:
            raise NoSuchMessage(f"no message with UID {uid}")
        return msg

    async def read(self, folder: str, uid: int) -> bytes:
        return self._message(folder, uid).data

    async def structure(self, folder: str, uid: int) -> MessageStructure:
        return self._message(folder, uid).structure

    async def structures(self, folder: str, uids: Sequence[int]) -> dict[int, MessageStructure]:
        out: dict[int, MessageStructure] = {}
        for uid in uids:
            try:
                out[uid] = self._message(folder, uid).structure
            except NoSuchMessage:
                pass
        return out

    async def store_flags(
        self,
        folder: str,
        uids: Sequence[int],
        mode: FlagMode,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        f = self._folder(folder)
        wanted = normalise_flags(flags)
        if mode is not FlagMode.REMOVE:
            f.use_keywords(wanted)
        changed: list[MessageInfo] = []
        refused: list[int] = []
        plan: list[tuple[_Message, frozenset[str]]] = []
        for uid in sorted(set(uids)):
            msg = f.messages.get(uid)
            if msg is None:
                continue
            if unchanged_since is not None and msg.info.modseq > unchanged_since:
                refused.append(uid)  # rfc7162:3.2 UNCHANGEDSINCE
                continue
            new = apply_flags(msg.info.flags, mode.value, wanted)
            if new != msg.info.flags:
                plan.append((msg, new))
        for msg, new in plan:  # all or nothing: apply_flags may refuse (TooManyKeywords)
            msg.info = msg.info._replace(flags=new, modseq=f.bump())
            msg.recent = False
            changed.append(msg.info)
        if changed:
            f.notify()
        return changed, refused

    async def copy(self, src: str, uids: Sequence[int], dst: str) -> CopyResult:
        source, target = self._folder(src), self._folder(dst)
        picked = [source.messages[u] for u in sorted(set(uids)) if u in source.messages]
        self._check_quota(sum(m.info.size for m in picked))
        target.use_keywords(f for m in picked for f in m.info.flags)
        pairs = []
        for msg in picked:
            result = self._store(
                target,
                msg.data,
                msg.structure,
                msg.info.flags,
                msg.info.internaldate,
                msg.info.internaldate_tz,
            )
            pairs.append((msg.info.uid, result.uid))
        return CopyResult(target.uidvalidity, tuple(pairs))

    async def move(self, src: str, uids: Sequence[int], dst: str) -> CopyResult:
        source, target = self._folder(src), self._folder(dst)
        if source is target:
            raise InvalidName("cannot move messages into the folder they are in")
        target.use_keywords(
            f for u in uids if u in source.messages for f in source.messages[u].info.flags
        )
        pairs = []
        for uid in sorted(set(uids)):
            msg = source.messages.pop(uid, None)
            if msg is None:
                continue
            result = self._store(
                target,
                msg.data,
                msg.structure,
                msg.info.flags,
                msg.info.internaldate,
                msg.info.internaldate_tz,
                msg.info.uidl,
            )
            self._tombstone(source, uid)
            pairs.append((uid, result.uid))
        if pairs:
            source.notify()
        return CopyResult(target.uidvalidity, tuple(pairs))

    async def expunge(self, folder: str, uids: Sequence[int] | None = None) -> list[int]:
        f = self._folder(folder)
        allowed = None if uids is None else set(uids)
        gone = [
            uid
            for uid, m in f.messages.items()
            if "\\Deleted" in m.info.flags and (allowed is None or uid in allowed)
        ]
        for uid in gone:
            del f.messages[uid]
            self._tombstone(f, uid)
        if gone:
            f.notify()
        return gone

    async def quota(self) -> tuple[int, int | None]:
        return self._used(), self._quota_lookup(self.account)

    async def wait_for_change(self, folder: str, after_modseq: int, timeout: float) -> int:
        f = self._folder(folder)
        if f.highestmodseq > after_modseq:
            return f.highestmodseq
        if f.changed is None:
            f.changed = asyncio.Event()
        try:
            await asyncio.wait_for(f.changed.wait(), timeout)
        except TimeoutError:
            pass
        return f.highestmodseq


def _local_tz() -> int:
    return -(time.altzone if time.daylight and time.localtime().tm_isdst else time.timezone) // 60


class MemoryMailStore:
    """Accounts appear on first use; ``quota_lookup(account)`` gives the byte limit or None."""

    def __init__(
        self, quota_lookup: QuotaLookup | None = None, max_tombstones: int | None = None
    ) -> None:
        self._quota_lookup: QuotaLookup = quota_lookup or (lambda account: None)
        self._max_tombstones = max_tombstones
        self._mailboxes: dict[str, MemoryMailbox] = {}
        self._delivered: dict[tuple[str, str], AppendResult] = {}  # (account, key) -> result

    def mailbox(self, account: str) -> MemoryMailbox:
        box = self._mailboxes.get(account)
        if box is None:
            box = self._mailboxes[account] = MemoryMailbox(
                account, self._quota_lookup, self._max_tombstones
            )
        return box

    async def create_account(self, account: str) -> None:
        self.mailbox(account)

    async def remove_account(self, account: str) -> None:
        self._mailboxes.pop(account, None)

    async def deliver_many(self, deliveries: Sequence[Delivery]) -> list[DeliveryResults]:
        return [await self.deliver(d.data, d.targets, d.internaldate, d.key) for d in deliveries]

    async def deliver(
        self,
        data: bytes,
        targets: Sequence[DeliveryTarget],
        internaldate: float | None = None,
        key: str | None = None,
    ) -> DeliveryResults:
        results: DeliveryResults = []
        for target in targets:
            done = self._delivered.get((target.account, key)) if key else None
            if done is not None:
                results.append(done)
                continue
            try:
                result = await self.mailbox(target.account).append(
                    target.folder, data, target.flags, internaldate
                )
            except MailStoreError as exc:
                results.append(exc)
                continue
            if key:
                self._delivered[(target.account, key)] = result
            results.append(result)
        return results

    async def close(self) -> None:
        self._mailboxes.clear()
