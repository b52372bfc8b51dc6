"""Embedded backend specifics: persistence, Maildir interop, rebuild, pickup, hard links,
orphan clean-up, and several processes on one data dir."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from merpati.mailstore.api import DeliveryTarget, FlagMode
from merpati.mailstore.embedded import EmbeddedMailStore
from merpati.mailstore.embedded.layout import INDEX_NAME, account_dir

A = "alice@example.org"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def msg(n: int) -> bytes:
    return b"From: x@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n" % (n, n)


def root(data: Path, account: str = A) -> Path:
    return account_dir(data / "mail", account)


def run(coro_fn, data: Path) -> object:  # type: ignore[no-untyped-def]
    async def main() -> object:
        store = EmbeddedMailStore(data)
        try:
            return await coro_fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_persists_and_keeps_flags_in_file_names(tmp_path: Path) -> None:
    async def write(store: EmbeddedMailStore) -> int:
        box = store.mailbox(A)
        await box.append("INBOX", msg(1))
        await box.append("INBOX", msg(2), flags=["\\Seen", "$Work"])
        await box.create_folder("Projects/2024")
        await box.append("Projects/2024", msg(3), flags=["\\Flagged"])
        await box.store_flags("INBOX", [1], FlagMode.ADD, ["\\Answered", "\\Deleted"])
        return (await box.folder("INBOX")).uidvalidity

    uidvalidity = run(write, tmp_path)
    r = root(tmp_path)
    assert r.name == "alice" and r.parent.name == "example.org"
    cur = sorted(os.listdir(r / "cur"))
    assert len(cur) == 2 and cur[0].endswith(":2,RT") != cur[1].endswith(":2,RT")
    assert any(n.endswith(":2,Sa") for n in cur)  # keyword $Work is Dovecot letter a
    assert (r / "dovecot-keywords").read_text() == "0 $Work\n"
    assert os.listdir(r / "new") == []
    assert (r / ".Projects.2024" / "cur").is_dir() and (r / ".Projects" / "cur").is_dir()
    assert os.listdir(r / ".Projects.2024" / "cur")[0].endswith(":2,F")
    for special in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (r / f".{special}" / "new").is_dir()

    async def check(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        info = await box.folder("INBOX")
        assert info.uidvalidity == uidvalidity and info.messages == 2
        msgs = await box.messages("INBOX")
        assert msgs[0].flags == frozenset({"\\Answered", "\\Deleted"})
        assert msgs[1].flags == frozenset({"\\Seen", "$Work"})
        assert await box.read("INBOX", 2) == msg(2)
        assert (await box.structure("Projects/2024", 1)).envelope.subject == b"message 3"
        assert await box.expunge("INBOX") == [1]

    run(check, tmp_path)
    assert len(os.listdir(r / "cur")) == 1


def test_rebuild_from_maildir_when_index_lost_or_corrupt(tmp_path: Path) -> None:
    async def write(store: EmbeddedMailStore) -> tuple[int, list[str]]:
        box = store.mailbox(A)
        for i in range(5):
            await box.append("INBOX", msg(i), flags=["\\Seen", "Work"] if i % 2 else [])
        await box.append("Archive", msg(9))
        return (await box.folder("INBOX")).uidvalidity, [
            m.uidl for m in await box.messages("INBOX")
        ]

    uidvalidity, uidls = run(write, tmp_path)  # type: ignore[misc]
    index = root(tmp_path) / INDEX_NAME
    for damage in ("delete", "garbage"):
        for suffix in ("", "-wal", "-shm"):
            Path(str(index) + suffix).unlink(missing_ok=True)
        if damage == "garbage":
            index.write_bytes(b"this is not a database" * 100)

        async def check(store: EmbeddedMailStore, previous: int = uidvalidity) -> int:
            box = store.mailbox(A)
            info = await box.folder("INBOX")
            assert info.uidvalidity > previous
            msgs = await box.messages("INBOX")
            assert [m.uidl for m in msgs] == uidls  # POP3 UIDLs survive a rebuild
            assert [m.flags for m in msgs] == [
                frozenset({"\\Seen", "Work"}) if i % 2 else frozenset() for i in range(5)
            ]
            assert [await box.read("INBOX", m.uid) for m in msgs] == [msg(i) for i in range(5)]
            assert (await box.folder("Archive")).messages == 1
            assert (await box.folder("Trash")).special_use == "\\Trash"
            return info.uidvalidity

        uidvalidity = run(check, tmp_path)  # type: ignore[assignment]


def test_pickup_of_mail_dropped_into_new_and_external_changes(tmp_path: Path) -> None:
    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        await box.append("INBOX", msg(1))
        r = root(tmp_path)
        before = (await box.folder("INBOX")).highestmodseq
        waiter = asyncio.create_task(box.wait_for_change("INBOX", before, 10.0))
        await asyncio.sleep(1.5)  # past the poller's first rounds: only its checks can see it
        t0 = time.monotonic()
        # Another MDA delivers the Maildir way: tmp/ then rename into new/.
        (r / "tmp" / "1700000000.X1.otherhost").write_bytes(msg(2))
        os.rename(r / "tmp" / "1700000000.X1.otherhost", r / "new" / "1700000000.X1.otherhost")
        assert await waiter > before
        assert time.monotonic() - t0 < 3.0
        msgs = await box.messages("INBOX")
        assert [m.uid for m in msgs] == [1, 2] and msgs[1].uidl == "1700000000.X1.otherhost"
        assert await box.read("INBOX", 2) == msg(2)
        # mutt marks it seen (moves to cur/ with :2,S) and deletes message 1.
        os.rename(r / "new" / "1700000000.X1.otherhost", r / "cur" / "1700000000.X1.otherhost:2,S")
        (r / "new" / os.listdir(r / "new")[0]).unlink()
        msgs = await box.messages("INBOX")
        assert [(m.uid, m.flags) for m in msgs] == [(2, frozenset({"\\Seen"}))]
        changes = await box.changes_since("INBOX", before)
        assert changes.expunged == (1,)

    run(body, tmp_path)


def test_deliver_hard_links_one_copy(tmp_path: Path) -> None:
    accounts = ["a@x.test", "b@x.test", "c@y.test"]

    async def body(store: EmbeddedMailStore) -> None:
        res = await store.deliver(msg(1), [DeliveryTarget(a) for a in accounts])
        assert all(r.uid == 1 for r in res)  # type: ignore[union-attr]
        for a in accounts:
            assert await store.mailbox(a).read("INBOX", 1) == msg(1)

    run(body, tmp_path)
    files = [root(tmp_path, a) / "new" / os.listdir(root(tmp_path, a) / "new")[0] for a in accounts]
    inodes = {f.stat().st_ino for f in files}
    assert len(inodes) == 1 and files[0].stat().st_nlink == 3


def test_orphaned_tmp_files_cleaned_at_open(tmp_path: Path) -> None:
    run(lambda s: s.create_account(A), tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    import socket

    host = socket.gethostname()
    orphan = root(tmp_path) / "tmp" / f"1.M1P{dead}Q1Rabcd.{host},S=5"
    orphan.write_bytes(b"half-")
    old = root(tmp_path) / ".Sent" / "tmp" / "ancient"
    old.write_bytes(b"x")
    os.utime(old, (1, 1))
    run(lambda s: s.mailbox(A).folders(), tmp_path)
    assert not orphan.exists() and not old.exists()


CHILD = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from merpati.mailstore.embedded import EmbeddedMailStore
from pathlib import Path

async def main():
    store = EmbeddedMailStore(Path(sys.argv[2]))
    box = store.mailbox("alice@example.org")
    tag = sys.argv[3]
    async def one(i):
        data = b"Subject: %s %d\r\n\r\n" % (tag.encode(), i) + b"x" * (i * 37 % 3000)
        r = await box.append("INBOX", data)
        return r.uid
    uids = await asyncio.gather(*(one(i) for i in range(int(sys.argv[4]))))
    print(" ".join(map(str, uids)))
    await store.close()

asyncio.run(main())
"""


def test_two_processes_append_to_one_account(tmp_path: Path) -> None:
    run(lambda s: s.create_account(A), tmp_path)
    n = 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, SRC, str(tmp_path), tag, str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    uids = [int(u) for out in outs for u in out.split()]
    assert sorted(uids) == list(range(1, 2 * n + 1))

    async def check(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        msgs = await box.messages("INBOX")
        assert [m.uid for m in msgs] == list(range(1, 2 * n + 1))
        subjects = set()
        for m in msgs:
            data = await box.read("INBOX", m.uid)
            assert len(data) == m.size
            subjects.add(data.split(b"\r\n", 1)[0])
        assert len(subjects) == 2 * n

    run(check, tmp_path)


def test_other_process_changes_wake_waiters(tmp_path: Path) -> None:
    run(lambda s: s.create_account(A), tmp_path)

    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        before = (await box.folder("INBOX")).highestmodseq
        waiter = asyncio.create_task(box.wait_for_change("INBOX", before, 20.0))
        await asyncio.sleep(0.2)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            SRC,
            str(tmp_path),
            "other",
            "1",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        t0 = time.monotonic()
        new = await waiter
        assert time.monotonic() - t0 < 1.5 and new > before  # poll 0.3 s; slack for load
        assert [m.uid for m in await box.messages("INBOX")] == [int(out)]

    run(body, tmp_path)


def test_many_concurrent_appenders_and_readers(tmp_path: Path) -> None:
    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        stop = False
        seen_max = 0

        async def reader() -> None:
            nonlocal seen_max
            while not stop:
                msgs = await box.messages("INBOX")
                uids = [m.uid for m in msgs]
                assert uids == sorted(uids) and len(set(uids)) == len(uids)
                if msgs:
                    assert await box.read("INBOX", msgs[-1].uid)
                    seen_max = max(seen_max, msgs[-1].uid)
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader()) for _ in range(4)]
        results = await asyncio.gather(*(box.append("INBOX", msg(i)) for i in range(200)))
        stop = True
        await asyncio.gather(*readers)
        assert sorted(r.uid for r in results) == list(range(1, 201))
        assert (await box.folder("INBOX")).messages == 200

    run(body, tmp_path)


def test_snapshot_cache_is_bounded_and_stays_correct(tmp_path: Path) -> None:
    from merpati.mailstore.embedded.snapshots import Snapshot, SnapshotCache

    cache = SnapshotCache(budget=5)
    cache.put("a", 1, Snapshot(1, 1, {i: None for i in range(3)}))  # type: ignore[misc]
    cache.put("a", 2, Snapshot(1, 1, {i: None for i in range(3)}))  # type: ignore[misc]
    assert cache.get("a", 1) is None and cache.get("a", 2) is not None

    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        for folder in ("INBOX", "Archive"):
            for i in range(4):
                await box.append(folder, msg(i))
        for _ in range(2):
            for folder in ("INBOX", "Archive"):
                await box.store_flags(folder, [2], FlagMode.ADD, ["\\Seen"])
                msgs = await box.messages(folder)
                assert [m.uid for m in msgs] == [1, 2, 3, 4]
                assert msgs[1].flags == frozenset({"\\Seen"})

    async def main() -> None:
        store = EmbeddedMailStore(tmp_path, snapshot_budget=5)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_failures_write_nothing(tmp_path: Path) -> None:
    import shutil

    from merpati.mailstore.api import QuotaExceeded, StorageFailure

    async def main() -> None:
        store = EmbeddedMailStore(tmp_path, {A: 100}.get)
        try:
            box = store.mailbox(A)
            await box.append("INBOX", b"x" * 60)
            with pytest.raises(QuotaExceeded):
                await box.append("INBOX", b"y" * 60)
            r = root(tmp_path)
            assert len(os.listdir(r / "new")) == 1 and os.listdir(r / "tmp") == []
            shutil.rmtree(r / ".Sent" / "tmp")  # the disk refuses the write
            with pytest.raises(StorageFailure):
                await box.append("Sent", b"z")
            assert (await box.folder("Sent")).messages == 0
            (r / ".Sent" / "tmp").mkdir()
            assert (await box.append("Sent", b"z")).uid == 1
        finally:
            await store.close()

    asyncio.run(main())


def test_open_mailstore_from_config(tmp_path: Path) -> None:
    import dataclasses

    from merpati.config import Config, StorageConfig
    from merpati.errors import OperationalError
    from merpati.mailstore import open_mailstore

    config = Config(data_dir=tmp_path)
    store = open_mailstore(config, lambda account: None)
    assert isinstance(store, EmbeddedMailStore)
    asyncio.run(store.close())
    bad = dataclasses.replace(config, storage=StorageConfig(backend="postgresql"))
    with pytest.raises(OperationalError):
        open_mailstore(bad, lambda account: None)


def test_idle_accounts_release_their_connections(tmp_path: Path) -> None:
    accounts = [f"u{i}@example.org" for i in range(6)]

    async def main() -> None:
        store = EmbeddedMailStore(tmp_path, max_open_accounts=2)
        try:
            for _ in range(3):
                for a in accounts:
                    box = store.mailbox(a)
                    r = await box.append("INBOX", msg(len(a)))
                    assert await box.read("INBOX", r.uid) == msg(len(a))
            await asyncio.sleep(0.2)  # releases run in the background
            connected = [a for a in accounts if (await store.open_account(a)).connected]
            assert len(connected) <= 4
            for a in accounts:
                assert [m.uid for m in await store.mailbox(a).messages("INBOX")] == [1, 2, 3]
        finally:
            await store.close()

    asyncio.run(main())


def test_folder_names_too_long_for_maildir_are_refused(tmp_path: Path) -> None:
    from merpati.mailstore.api import InvalidName

    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        await box.create_folder("日本" * 20)  # fits: 40 characters, about 110 bytes encoded
        with pytest.raises(InvalidName):
            await box.create_folder("日本" * 50)
        with pytest.raises(InvalidName):
            await box.rename_folder("日本" * 20, "日本" * 50)
        assert (await box.folder("日本" * 20)).messages == 0

    run(body, tmp_path)


def test_account_removed_and_recreated_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from merpati.mailstore.embedded import store as store_module

    monkeypatch.setattr(store_module, "IDENTITY_CHECK_INTERVAL", 0.0)

    async def main() -> None:
        server = EmbeddedMailStore(tmp_path)
        cli = EmbeddedMailStore(tmp_path)  # e.g. `merpati user remove` + `user add`
        try:
            await server.mailbox(A).append("INBOX", msg(1))
            await cli.remove_account(A)
            await cli.mailbox(A).append("INBOX", msg(2))
            msgs = await server.mailbox(A).messages("INBOX")
            assert [await server.mailbox(A).read("INBOX", m.uid) for m in msgs] == [msg(2)]
        finally:
            await cli.close()
            await server.close()

    asyncio.run(main())


FLAGGER = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from merpati.mailstore.api import FlagMode
from merpati.mailstore.embedded import EmbeddedMailStore

async def main() -> None:
    store = EmbeddedMailStore(Path(sys.argv[2]))
    box = store.mailbox("alice@example.org")
    for line in sys.stdin:  # one flag change per line, acknowledged once committed
        await box.store_flags("INBOX", [int(line)], FlagMode.ADD, ["\\\\Flagged"])
        print("done", flush=True)
    await store.close()

asyncio.run(main())
"""


def test_changes_since_sees_every_commit_of_another_process(tmp_path: Path) -> None:
    """changes_since answers "nothing new" from a shortcut when the index has not moved:
    a commit by another process right after a quiet answer, or mail dropped into the
    Maildir, must still show at the next call."""

    async def body(store: EmbeddedMailStore) -> None:
        box = store.mailbox(A)
        for i in range(5):
            await box.append("INBOX", msg(i))
        highest = (await box.folder("INBOX")).highestmodseq
        other = subprocess.Popen(
            [sys.executable, "-c", FLAGGER, SRC, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdin is not None and other.stdout is not None
        try:
            for uid in (1, 2, 3, 4, 5):
                quiet = await box.changes_since("INBOX", highest)
                assert quiet.changed == () and quiet.highestmodseq == highest
                await box.changes_since("INBOX", highest)  # answered by the shortcut
                dirs = [root(tmp_path) / sub for sub in ("new", "cur")]
                mtimes = [d.stat().st_mtime_ns for d in dirs]
                other.stdin.write(f"{uid}\n")
                other.stdin.flush()
                assert other.stdout.readline() == "done\n"
                # As if within one tick of a coarse file-system clock: the directories seem
                # unmoved, so only the index can tell.
                for d, mtime in zip(dirs, mtimes, strict=True):
                    os.utime(d, ns=(mtime, mtime))
                changes = await box.changes_since("INBOX", highest)
                assert [m.uid for m in changes.changed] == [uid]
                assert changes.changed[0].flags == frozenset({"\\Flagged"})
                assert changes.highestmodseq > highest
                highest = changes.highestmodseq
        finally:
            other.stdin.close()
            other.wait(30)
        assert other.returncode == 0
        await box.changes_since("INBOX", highest)
        r = root(tmp_path)
        (r / "tmp" / "1700000000.X9.otherhost").write_bytes(msg(9))
        os.rename(r / "tmp" / "1700000000.X9.otherhost", r / "new" / "1700000000.X9.otherhost")
        changes = await box.changes_since("INBOX", highest)
        assert [m.uidl for m in changes.changed] == ["1700000000.X9.otherhost"]

    run(body, tmp_path)
