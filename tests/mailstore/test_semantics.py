"""Semantics every backend shares (run against memory and embedded)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from merpati.mailstore.api import (
    DEFAULT_FOLDERS,
    DeliveryTarget,
    FlagMode,
    FolderExists,
    FolderNotEmpty,
    InvalidName,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
)

from .conftest import Runner

A = "alice@example.org"
B = "bob@example.org"


def msg(n: int, extra: bytes = b"") -> bytes:
    return b"From: x@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n%s" % (n, n, extra)


def test_default_folders_and_append(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        infos = {f.name: f for f in await box.folders()}
        for name, special in DEFAULT_FOLDERS:
            assert infos[name].special_use == special
            assert infos[name].messages == 0 and infos[name].uidnext == 1
        r1 = await box.append("INBOX", msg(1))
        r2 = await box.append("inbox", msg(2), flags=["\\Seen", "$Label1", "\\Recent"])
        assert (r1.uid, r2.uid) == (1, 2) and r2.modseq > r1.modseq
        assert r1.uidvalidity == r2.uidvalidity == infos["INBOX"].uidvalidity
        info = await box.folder("INBOX")
        assert (info.messages, info.unseen, info.uidnext) == (2, 1, 3)
        assert info.size == len(msg(1)) + len(msg(2)) and info.highestmodseq >= r2.modseq
        msgs = await box.messages("INBOX")
        assert [m.uid for m in msgs] == [1, 2]
        assert msgs[1].flags == frozenset({"\\Seen", "$Label1"})
        assert msgs[0].size == len(msg(1)) and msgs[0].uidl != msgs[1].uidl
        assert await box.read("INBOX", 2) == msg(2)
        s = await box.structure("INBOX", 1)
        assert s.envelope.subject == b"message 1"
        with pytest.raises(NoSuchMessage):
            await box.read("INBOX", 99)
        with pytest.raises(NoSuchFolder):
            await box.append("Nope", msg(3))

    run(body)


def test_internaldate_kept(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.append("INBOX", msg(1), internaldate=1_000_000_000.0, internaldate_tz=120)
        m = (await box.messages("INBOX"))[0]
        assert m.internaldate == 1_000_000_000.0 and m.internaldate_tz == 120

    run(body)


def test_flags_modseq_and_changes(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        for i in range(5):
            await box.append("INBOX", msg(i))
        base = (await box.folder("INBOX")).highestmodseq
        changed, refused = await box.store_flags("INBOX", [1, 2, 99], FlagMode.ADD, ["\\seen"])
        assert [m.uid for m in changed] == [1, 2] and refused == []
        assert all(m.flags == frozenset({"\\Seen"}) and m.modseq > base for m in changed)
        again, _ = await box.store_flags("INBOX", [1], FlagMode.ADD, ["\\Seen"])
        assert again == []  # nothing changed, no MODSEQ bump
        mod1 = changed[0].modseq
        # rfc7162:3.2 UNCHANGEDSINCE refuses messages modified after the given MODSEQ.
        ok, refused = await box.store_flags(
            "INBOX", [1, 3], FlagMode.REPLACE, ["\\Flagged", "kw"], unchanged_since=mod1 - 1
        )
        assert refused == [1] and [m.uid for m in ok] == [3]
        await box.store_flags("INBOX", [2], FlagMode.REMOVE, ["\\Seen"])
        ch = await box.changes_since("INBOX", base)
        assert [m.uid for m in ch.changed] == [1, 2, 3] and ch.expunged == ()
        await box.store_flags("INBOX", [4, 5], FlagMode.ADD, ["\\Deleted"])
        gone = await box.expunge("INBOX", [5, 1])
        assert gone == [5]
        gone = await box.expunge("INBOX")
        assert gone == [4]
        ch = await box.changes_since("INBOX", base)
        assert ch.expunged == (4, 5)
        assert [m.uid for m in ch.changed] == [1, 2, 3]
        assert ch.highestmodseq == (await box.folder("INBOX")).highestmodseq
        assert [m.uid for m in await box.messages("INBOX")] == [1, 2, 3]
        # UIDs are never reused.
        r = await box.append("INBOX", msg(9))
        assert r.uid == 6

    run(body)


def test_copy_move(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        for i in range(3):
            await box.append("INBOX", msg(i), flags=["\\Flagged"] if i == 1 else [])
        c = await box.copy("INBOX", [2, 3, 42], "Archive")
        assert c.uidvalidity == (await box.folder("Archive")).uidvalidity
        assert c.pairs == ((2, 1), (3, 2))
        arch = await box.messages("Archive")
        assert arch[0].flags == frozenset({"\\Flagged"})
        assert await box.read("Archive", 1) == msg(1)
        m = await box.move("INBOX", [1, 2], "Trash")
        assert m.pairs == ((1, 1), (2, 2))
        assert [x.uid for x in await box.messages("INBOX")] == [3]
        assert await box.read("Trash", 1) == msg(0)
        ch = await box.changes_since("INBOX", 0)
        assert ch.expunged == (1, 2)
        with pytest.raises(NoSuchFolder):
            await box.copy("INBOX", [3], "Missing")

    run(body)


def test_folder_operations(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.create_folder("Projects/2024/Q1")
        names = {f.name for f in await box.folders()}
        assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= names
        with pytest.raises(FolderExists):
            await box.create_folder("Projects")
        for bad in ("", "/x", "x/", "a//b", "a/../b", "bad\x01", "wild*", "x%"):
            with pytest.raises(InvalidName):
                await box.create_folder(bad)
        await box.create_folder("Ünïcødé/日本語")
        await box.append("Ünïcødé/日本語", msg(1))
        await box.append("Projects/2024/Q1", msg(2))
        uv = (await box.folder("Projects/2024/Q1")).uidvalidity
        await box.rename_folder("Projects", "Old/Projects")
        names = {f.name for f in await box.folders()}
        assert "Old/Projects/2024/Q1" in names and "Projects/2024" not in names
        moved = await box.folder("Old/Projects/2024/Q1")
        assert moved.messages == 1 and moved.uidvalidity == uv
        assert await box.read("Old/Projects/2024/Q1", 1) == msg(2)
        with pytest.raises(FolderNotEmpty):
            await box.delete_folder("Old")
        await box.delete_folder("Old/Projects/2024/Q1")
        with pytest.raises(NoSuchFolder):
            await box.folder("Old/Projects/2024/Q1")
        with pytest.raises(InvalidName):
            await box.delete_folder("INBOX")
        with pytest.raises(InvalidName):
            await box.rename_folder("Old", "Old/Sub")
        await box.subscribe("Sent", False)
        assert not (await box.folder("Sent")).subscribed
        assert (await box.folder("Drafts")).subscribed
        assert (await box.folder("Ünïcødé/日本語")).messages == 1

    run(body)


def test_rename_inbox_moves_messages(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.append("INBOX", msg(1))
        await box.rename_folder("INBOX", "Old Inbox")
        assert (await box.folder("INBOX")).messages == 0
        assert await box.read("Old Inbox", 1) == msg(1)
        r = await box.append("INBOX", msg(2))
        assert r.uid == 2

    run(body)


def test_quota(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.append("INBOX", b"x" * 600)
        assert await box.quota() == (600, 1000)
        with pytest.raises(QuotaExceeded):
            await box.append("INBOX", b"y" * 500)
        assert (await box.folder("INBOX")).messages == 1
        with pytest.raises(QuotaExceeded):
            await box.copy("INBOX", [1], "Archive")
        results = await store.deliver(b"z" * 300, [DeliveryTarget(A), DeliveryTarget(B)])
        assert results[0].uid == 2
        results2 = await store.deliver(b"w" * 300, [DeliveryTarget(A), DeliveryTarget(B)])
        assert isinstance(results2[0], QuotaExceeded) and results2[1].uid == 2
        assert await box.quota() == (900, 1000)
        assert (await store.mailbox(B).quota())[1] is None

    run(body, quota={A: 1000})


def test_deliver_many_targets(run: Runner) -> None:
    async def body(store: Any) -> None:
        data = msg(7)
        res = await store.deliver(
            data,
            [
                DeliveryTarget(A),
                DeliveryTarget(B, "Junk", frozenset({"\\Seen"})),
                DeliveryTarget(A, "Nope"),
            ],
            internaldate=1_500_000_000.0,
        )
        assert res[0].uid == 1 and res[1].uid == 1 and isinstance(res[2], NoSuchFolder)
        assert await store.mailbox(A).read("INBOX", 1) == data
        j = (await store.mailbox(B).messages("Junk"))[0]
        assert j.flags == frozenset({"\\Seen"}) and j.internaldate == 1_500_000_000.0

    run(body)


def test_wait_for_change(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        start = (await box.folder("INBOX")).highestmodseq
        assert await box.wait_for_change("INBOX", start, 0.05) == start
        waiter = asyncio.create_task(box.wait_for_change("INBOX", start, 5.0))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await box.append("INBOX", msg(1))
        new = await waiter
        assert new > start and loop.time() - t0 < 1.0
        assert await box.wait_for_change("INBOX", start, 5.0) == new  # already past

    run(body)


def test_concurrent_appends_unique_uids(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        results = await asyncio.gather(*(box.append("INBOX", msg(i)) for i in range(50)))
        uids = sorted(r.uid for r in results)
        assert uids == list(range(1, 51))
        msgs = await box.messages("INBOX")
        assert len(msgs) == 50
        for r in results[:5]:
            assert (await box.read("INBOX", r.uid)).startswith(b"From: x@example.org")

    run(body)


def test_remove_account(run: Runner) -> None:
    async def body(store: Any) -> None:
        await store.create_account(A)
        await store.mailbox(A).append("INBOX", msg(1))
        await store.remove_account(A)
        assert (await store.mailbox(A).folder("INBOX")).messages == 0

    run(body)


def test_recent_until_flags_change(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.append("INBOX", msg(1))
        await box.append("INBOX", msg(2), flags=["\\Seen"])
        assert (await box.folder("INBOX")).recent == 2
        await box.store_flags("INBOX", [1], FlagMode.ADD, ["\\Flagged"])
        info = await box.folder("INBOX")
        assert (info.recent, info.unseen) == (1, 1)
        await box.copy("INBOX", [1], "Archive")
        assert (await box.folder("Archive")).recent == 1

    run(body)


def test_subscriptions_outlive_deleted_folders(run: Runner) -> None:
    async def body(store: Any) -> None:
        box = store.mailbox(A)
        await box.create_folder("Lists/Python")
        await box.create_folder("Gone")
        assert {"Lists", "Lists/Python", "Gone", "INBOX"} <= set(await box.subscriptions())
        await box.subscribe("Lists", False)
        await box.delete_folder("Gone")
        subs = await box.subscriptions()
        assert "Gone" in subs and "Lists" not in subs and subs == sorted(subs)
        with pytest.raises(NoSuchFolder):
            await box.subscribe("Never", True)  # SUBSCRIBE checks that the folder exists
        with pytest.raises(NoSuchFolder):
            await box.subscribe("Never", False)
        # creating the folder again takes the kept subscription back (no duplicate)
        await box.create_folder("Gone")
        assert (await box.subscriptions()).count("Gone") == 1
        await box.delete_folder("Gone")
        await box.subscribe("Gone", False)  # UNSUBSCRIBE of a deleted folder's name
        assert "Gone" not in await box.subscriptions()
        await box.rename_folder("Lists", "Old")
        subs = await box.subscriptions()
        assert "Old/Python" in subs and "Lists/Python" not in subs

    run(body)


def test_keyword_limits(run: Runner) -> None:
    """rfc5530:3 LIMIT: a folder uses at most MAX_FOLDER_KEYWORDS keywords (past Dovecot's 26
    letters the embedded store keeps them in the index only), a message at most MAX_KEYWORDS;
    past either the change is refused whole, nothing is dropped silently."""
    from merpati.mailstore.api import MAX_FOLDER_KEYWORDS, TooManyKeywords
    from merpati.mailstore.names import MAX_KEYWORDS

    async def body(store: Any) -> None:
        box = store.mailbox(A)
        uids = [(await box.append("INBOX", msg(i), flags=["$First"])).uid for i in range(4)]
        kws = [f"kw{i}" for i in range(MAX_FOLDER_KEYWORDS - 1)]
        for i, uid in enumerate(uids):
            chunk = kws[i * 50 : (i + 1) * 50]
            changed, _ = await box.store_flags("INBOX", [uid], FlagMode.ADD, chunk)
            assert changed[0].flags == frozenset(chunk) | {"$First"}
        with pytest.raises(TooManyKeywords):  # the folder's 201st keyword
            await box.store_flags("INBOX", [uids[0]], FlagMode.ADD, ["$OneTooMany"])
        with pytest.raises(TooManyKeywords):
            await box.append("INBOX", msg(9), flags=["$OneTooMany"])
        # known keywords and system flags still work; removing never hits the limit
        await box.store_flags("INBOX", uids, FlagMode.ADD, ["\\Seen", "kw5"])
        await box.store_flags("INBOX", uids, FlagMode.REMOVE, ["kw1", "$Never"])
        assert all("kw1" not in m.flags for m in await box.messages("INBOX"))
        # one message: at most MAX_KEYWORDS keywords, refused for every message of the STORE
        before = await box.messages("INBOX")
        with pytest.raises(TooManyKeywords):
            await box.store_flags("INBOX", uids[:2], FlagMode.ADD, kws[50 : 50 + MAX_KEYWORDS])
        with pytest.raises(TooManyKeywords):
            await box.store_flags("INBOX", uids[1:3], FlagMode.ADD, kws[: MAX_KEYWORDS - 1])
        assert await box.messages("INBOX") == before
        # another folder has its own count; a copy into it carries the keywords
        result = await box.copy("INBOX", [uids[0]], "Archive")
        copied = await box.messages("Archive")
        assert copied[0].flags == before[0].flags and result.pairs[0][0] == uids[0]

    run(body)


def test_message_map_is_the_callers_own(run: Runner) -> None:
    """``message_map`` (SELECT's view keeps it): the same messages as ``messages()``, by UID
    in UID order, and a dict the caller may change without changing the store's."""

    async def body(store: Any) -> None:
        box = store.mailbox(A)
        for i in range(4):
            await box.append("INBOX", msg(i), flags=["\\Seen"] if i % 2 else [])
        await box.store_flags("INBOX", [2], FlagMode.ADD, ["\\Deleted"])
        await box.expunge("INBOX")
        mine = await box.message_map("INBOX")
        listed = await box.messages("INBOX")
        assert list(mine) == [1, 3, 4] == [m.uid for m in listed]
        assert list(mine.values()) == listed
        mine.pop(1)
        mine[99] = listed[0]
        again = await box.message_map("INBOX")
        assert list(again) == [1, 3, 4] and list(again.values()) == listed
        with pytest.raises(NoSuchFolder):
            await box.message_map("Nowhere")

    run(body)
