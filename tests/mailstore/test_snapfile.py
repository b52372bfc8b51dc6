"""Folder snapshots on disk (``merpati.mailstore.embedded.snapfile``): after a restart the
first ``messages()``/``folder()`` of a large folder come from the file, brought up to date
from the index; a stale, foreign or damaged file is never believed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from merpati.mailstore.api import FlagMode, FolderInfo, MessageInfo
from merpati.mailstore.embedded import EmbeddedMailStore, snapfile
from merpati.mailstore.embedded.layout import account_dir

A = "alice@example.org"


def msg(n: int) -> bytes:
    return b"From: x@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n" % (n, n)


def snapshot_files(data: Path) -> list[Path]:
    return sorted(account_dir(data / "mail", A).glob("merpati-snapshot-*"))


async def state(data: Path) -> tuple[list[MessageInfo], FolderInfo]:
    """A fresh store (as after a restart): folder() then messages(), as SELECT does."""
    store = EmbeddedMailStore(data)
    try:
        box = store.mailbox(A)
        info = await box.folder("INBOX")
        return await box.messages("INBOX"), info
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapfile, "MIN_MESSAGES", 4)


def test_restart_reads_the_file_and_catches_up(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedMailStore(tmp_path)
        box = store.mailbox(A)
        for i in range(10):
            await box.append("INBOX", msg(i), ["$Work"] if i == 3 else [])
        await box.store_flags("INBOX", [2, 5], FlagMode.ADD, ["\\Seen"])
        expected = await box.messages("INBOX")  # built from SQLite: writes the file
        assert len(snapshot_files(tmp_path)) == 1
        await store.close()

        got, info = await state(tmp_path)
        assert got == expected
        assert got[3].flags == frozenset({"$Work"})
        assert (info.messages, info.unseen) == (10, 8)

        # Changes after the file was written: flags, an expunge, new mail, from another
        # store object (another process, as far as the file knows).
        store = EmbeddedMailStore(tmp_path)
        box = store.mailbox(A)
        await box.messages("INBOX")
        await box.store_flags("INBOX", [1], FlagMode.ADD, ["\\Flagged"])
        await box.store_flags("INBOX", [6], FlagMode.ADD, ["\\Deleted"])
        await box.expunge("INBOX")
        await box.append("INBOX", msg(99))
        await store.close()
        store = EmbeddedMailStore(tmp_path)  # the truth, read without any file
        for f in snapshot_files(tmp_path):
            f.rename(f.with_name("aside-" + f.name))
        truth = await store.mailbox(A).messages("INBOX")
        truth_info = await store.mailbox(A).folder("INBOX")
        await store.close()
        for f in snapshot_files(tmp_path):
            f.unlink()
        for f in account_dir(tmp_path / "mail", A).glob("aside-*"):
            f.rename(f.with_name(f.name.removeprefix("aside-")))

        got, info = await state(tmp_path)
        assert got == truth
        assert [m.uid for m in got] == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
        assert got[0].flags == frozenset({"\\Flagged"})
        assert (info.messages, info.unseen, info.size) == (
            truth_info.messages,
            truth_info.unseen,
            truth_info.size,
        )

    asyncio.run(main())


def test_one_flag_set_for_all(tmp_path: Path) -> None:
    """Every message with the same flags (a folder all read): the file is used."""

    async def main() -> None:
        store = EmbeddedMailStore(tmp_path)
        box = store.mailbox(A)
        for i in range(6):
            await box.append("INBOX", msg(i), ["\\Seen"])
        expected = await box.messages("INBOX")
        await store.close()
        (path,) = snapshot_files(tmp_path)
        info = await EmbeddedMailStore(tmp_path).mailbox(A).folder("INBOX")
        got = snapfile.load(
            path, info.uidvalidity, info.highestmodseq, lambda text: frozenset(text.split())
        )
        assert got is not None and list(got[1].values()) == expected
        assert all(m.flags == frozenset({"\\Seen"}) for m in got[1].values())

    asyncio.run(main())


def test_bad_or_foreign_files_are_ignored(tmp_path: Path) -> None:
    async def main() -> None:
        store = EmbeddedMailStore(tmp_path)
        box = store.mailbox(A)
        for i in range(6):
            await box.append("INBOX", msg(i))
        expected = await box.messages("INBOX")
        uidvalidity = (await box.folder("INBOX")).uidvalidity
        await store.close()
        (path,) = snapshot_files(tmp_path)
        good = path.read_bytes()

        for damaged in (b"", b"garbage", good[:-7], good[:40]):
            path.write_bytes(damaged)
            got, info = await state(tmp_path)
            assert got == expected and info.messages == 6

        # A file of another UIDVALIDITY, or from the future (MODSEQ above the folder's).
        for valid, modseq in ((uidvalidity + 1, 1), (uidvalidity, 10**9)):
            snapfile.save(path, valid, modseq, (1, 0.0, 0.0, 1.0), expected[:1])
            got, info = await state(tmp_path)
            assert got == expected and info.messages == 6

    asyncio.run(main())


def test_small_folders_get_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapfile, "MIN_MESSAGES", 100)

    async def main() -> None:
        store = EmbeddedMailStore(tmp_path)
        box = store.mailbox(A)
        await box.append("INBOX", msg(1))
        assert len(await box.messages("INBOX")) == 1
        await store.close()
        assert snapshot_files(tmp_path) == []

    asyncio.run(main())
