"""One account's Maildir++ and index, seen from worker threads: opening (build, rebuild,
orphan clean-up), folders, and every read. Appends are in ``commit``, changes to messages
(flags, expunge, copy, move) in ``changes``.

Invariants: all methods are blocking and run in a worker thread, never on the event loop.
Writes hold ``wlock`` and run in ``BEGIN IMMEDIATE`` transactions on the writer connection;
files are placed (link/rename) inside that transaction and directories are fsynced before
COMMIT, so another process never sees a file whose metadata is not committed, and a crash
leaves at worst an extra file that the next sync picks up (never a lost one). Files are
unlinked only after the COMMIT that expunged them. Reads use a second connection (WAL lets
them run beside a writer) under ``rlock``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from merpati.durable import fsync_dir
from merpati.mailstore.api import (
    SEPARATOR,
    Changes,
    FolderExists,
    FolderInfo,
    FolderNotEmpty,
    InvalidName,
    MessageInfo,
    NoSuchFolder,
    NoSuchMessage,
    StorageFailure,
)
from merpati.mailstore.embedded import snapfile
from merpati.mailstore.embedded.changes import transfer_rows
from merpati.mailstore.embedded.index import connect, open_index, transaction
from merpati.mailstore.embedded.layout import (
    INDEX_NAME,
    folder_dirname,
    make_maildir,
    new_basename,
    parse_filename,
)
from merpati.mailstore.embedded.snapshots import Snapshot, SnapshotCache
from merpati.mailstore.embedded.sync import (
    FOLDER_COLUMNS,
    FolderRow,
    build,
    clean_tmp,
    dir_mtimes,
    folder_row,
    next_uidvalidity,
    sync_folder,
)
from merpati.mailstore.names import is_under, parents
from merpati.mime import serial
from merpati.mime.scan import scan
from merpati.mime.structure import MessageStructure

_MSG_COLUMNS = "uid, modseq, flags, internaldate, tz, size, uidl"
T = TypeVar("T")
# Messages changed since a MODSEQ, looked up by MODSEQ: without INDEXED BY the planner (no
# ANALYZE statistics) walks the whole folder in UID order to spare the sort, which cost
# 7.6 ms per call on 100,000 messages (every command's changes_since), ~50 us this way.
_CHANGED = "messages INDEXED BY messages_modseq"


def _values(infos: dict[int, MessageInfo]) -> list[MessageInfo]:
    return list(infos.values())


# Maildir++ flattens the hierarchy into one directory name: it must fit the file system's
# NAME_MAX (255 bytes on Linux file systems).
MAX_DIRNAME_BYTES = 255


def checked_dirname(name: str) -> str:
    dirname = folder_dirname(name)
    if len(dirname.encode("utf-8")) > MAX_DIRNAME_BYTES:
        raise InvalidName("folder name is too long")
    return dirname


class Account:
    def __init__(self, account: str, root: Path, snapshots: SnapshotCache | None = None) -> None:
        self.account = account
        self.root = root
        self.root_str = str(root)  # for paths built per message (pathlib costs there)
        self._snapshots = snapshots if snapshots is not None else SnapshotCache()
        self.wlock = threading.Lock()
        self.rlock = threading.Lock()
        self._w: sqlite3.Connection | None = None
        self._r: sqlite3.Connection | None = None
        # Folder counts as of (UIDVALIDITY, HIGHESTMODSEQ): every change bumps the latter.
        self._counts: dict[int, tuple[tuple[int, int], tuple[int, float, float, float]]] = {}
        self._flagsets: dict[str, frozenset[str]] = {}
        # changes_since's shortcut: folder name -> the reader's PRAGMA data_version and the
        # folder's row, read together in one transaction (see ``changes_since``)
        # (and the paths of its new/ and cur/ directories, whose mtimes the row records).
        self._quiet: dict[str, tuple[int, FolderRow, str, str]] = {}
        self._closed = False
        self.last_used = time.monotonic()
        # The index file this object was opened on, and when that was last compared with the
        # file on disk (another process may remove the account or rebuild its index).
        self.index_id: tuple[int, int] | None = None
        self.checked = time.monotonic()

    # -- opening ------------------------------------------------------------------------------
    def open(self) -> None:
        make_maildir(self.root)
        with self.wlock:
            self._w = open_index(self.root / INDEX_NAME)
            clean_tmp(self.root)
            with transaction(self._w):
                build(self._w, self.root)
                # Under the write lock: directories are only renamed while it is held, so a
                # missing one means a crash in the middle of a rename, not work in progress.
                if self._missing_dirs():
                    self._rebuild_in_txn()
            self.index_id = self.current_index_id()

    def _missing_dirs(self) -> bool:
        w = self._writer()
        return any(
            not (self.root / d / "cur").is_dir()
            for (d,) in w.execute("SELECT dirname FROM folders")
        )

    def _rebuild_in_txn(self) -> None:
        """Throw the index away and read the Maildir again (new UIDVALIDITYs)."""
        w = self._writer()
        for table in ("folders", "messages", "structures", "expunged", "keywords"):
            w.execute(f"DELETE FROM {table}")
        w.execute("DELETE FROM meta WHERE key = 'built'")
        build(w, self.root)
        self._snapshots.drop(self.account)
        self._counts.clear()

    def close(self) -> None:
        """For good (store closing, account removed): later use raises StorageFailure."""
        with self.wlock, self.rlock:
            self._closed = True
            self._drop_connections()

    def release(self) -> None:
        """Close the index connections (file descriptors) of an idle account; the next use
        reopens them. The object, its locks and its caches stay."""
        with self.wlock, self.rlock:
            self._drop_connections()

    def _drop_connections(self) -> None:
        for conn in (self._w, self._r):
            if conn is not None:
                conn.close()
        self._w = self._r = None
        self._quiet.clear()  # a new reader connection counts data_version afresh

    @property
    def connected(self) -> bool:
        return self._w is not None or self._r is not None

    def _open(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        """``conn``, or a new connection to the index when there is none yet."""
        self.last_used = time.monotonic()
        if conn is not None:
            return conn
        if self._closed:
            raise StorageFailure("the mail store is closed")
        return connect(self.root / INDEX_NAME)

    def _writer(self) -> sqlite3.Connection:
        """The writer connection; the caller holds ``wlock``."""
        self._w = self._open(self._w)
        return self._w

    def _reader(self) -> sqlite3.Connection:
        """The reader connection; the caller holds ``rlock``."""
        self._r = self._open(self._r)
        return self._r

    def current_index_id(self) -> tuple[int, int] | None:
        """(device, inode) of the index file now on disk; None when there is none."""
        try:
            st = os.stat(self.root / INDEX_NAME)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def index_stamp(self) -> tuple[int, int]:
        """Changes with every commit by any process (the WAL file's mtime and size); needs
        no connection, so the change feed can watch many accounts cheaply."""
        try:
            st = os.stat(str(self.root / INDEX_NAME) + "-wal")
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    # -- folders --------------------------------------------------------------------------------
    def _row(self, conn: sqlite3.Connection, name: str) -> FolderRow:
        row = folder_row(conn, name)
        if row is None:
            raise NoSuchFolder(f"no folder named {name}")
        return row

    def row(self, name: str) -> FolderRow:
        """The folder's row as the index has it (no pickup: appends need none, and must not
        wait for a commit in progress)."""
        with self.rlock:
            return self._row(self._reader(), name)

    def fresh_row(self, name: str) -> FolderRow:
        """The folder's row after picking up changes other programs made to its directory."""
        with self.rlock:
            row = self._row(self._reader(), name)
        if dir_mtimes(self.root / row.dirname) != (row.new_mtime, row.cur_mtime):
            with self.wlock:
                w = self._writer()
                with transaction(w):
                    row = self._row(w, name)
                    if dir_mtimes(self.root / row.dirname) != (row.new_mtime, row.cur_mtime):
                        self.adjust_used(w, sync_folder(w, self.root, row))
                        row = self._row(w, name)
        return row

    def _info(self, conn: sqlite3.Connection, row: FolderRow) -> FolderInfo:
        key = (row.uidvalidity, row.highestmodseq)
        cached = self._counts.get(row.id)
        on_disk = None
        if cached is None:  # first use since start: a snapshot file may know them
            on_disk = snapfile.load_counts(
                snapfile.path_for(self.root, row.id), row.uidvalidity, row.highestmodseq
            )
        if cached is not None and cached[0] == key:
            count, unseen, recent, size = cached[1]
        elif on_disk is not None:
            count, unseen, recent, size = on_disk
            self._counts[row.id] = (key, on_disk)
        else:
            count, unseen, recent, size = conn.execute(
                "SELECT count(*), total(seen = 0), total(recent), total(size) FROM messages"
                " WHERE folder = ?",
                (row.id,),
            ).fetchone()
            self._counts[row.id] = (key, (count, unseen, recent, size))
        return FolderInfo(
            name=row.name,
            uidvalidity=row.uidvalidity,
            uidnext=row.uidnext,
            highestmodseq=row.highestmodseq,
            messages=count,
            unseen=int(unseen),
            recent=int(recent),
            size=int(size),
            special_use=row.special_use,
            subscribed=row.subscribed,
        )

    def folder(self, name: str) -> FolderInfo:
        self.fresh_row(name)
        with self.rlock:
            r = self._reader()
            r.execute("BEGIN")
            try:
                return self._info(r, self._row(r, name))
            finally:
                r.execute("COMMIT")

    def folders(self) -> list[FolderInfo]:
        with self.rlock:
            names = [n for (n,) in self._reader().execute("SELECT name FROM folders")]
        for name in names:
            try:
                self.fresh_row(name)
            except NoSuchFolder:
                continue
        with self.rlock:
            r = self._reader()
            r.execute("BEGIN")
            try:
                rows = [
                    FolderRow(*x)
                    for x in r.execute(f"SELECT {FOLDER_COLUMNS} FROM folders ORDER BY name")
                ]
                return [self._info(r, row) for row in rows]
            finally:
                r.execute("COMMIT")

    def _insert_folder(self, w: sqlite3.Connection, name: str, special: str | None) -> None:
        dirname = checked_dirname(name)
        make_maildir(self.root / dirname)
        (self.root / dirname / "maildirfolder").touch()  # Maildir++ marks subfolders so
        new_mtime, cur_mtime = dir_mtimes(self.root / dirname)
        w.execute("DELETE FROM kept_subscriptions WHERE name = ?", (name,))
        w.execute(
            "INSERT INTO folders (name, dirname, uidvalidity, special_use, new_mtime, cur_mtime)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, dirname, next_uidvalidity(self.root), special, new_mtime, cur_mtime),
        )

    def create_folder(self, name: str, special_use: str | None) -> None:
        with self.wlock:
            w = self._writer()
            with transaction(w):
                if folder_row(w, name) is not None:
                    raise FolderExists(f"folder {name} already exists")
                for parent in parents(name):
                    if folder_row(w, parent) is None:
                        self._insert_folder(w, parent, None)
                self._insert_folder(w, name, special_use)
            fsync_dir(self.root)

    def delete_folder(self, name: str) -> None:
        if name == "INBOX":
            raise InvalidName("INBOX cannot be deleted")
        with self.wlock:
            w = self._writer()
            with transaction(w):
                row = self._row(w, name)
                child = w.execute(
                    "SELECT 1 FROM folders WHERE substr(name, 1, ?) = ? LIMIT 1",
                    (len(name) + 1, name + SEPARATOR),
                ).fetchone()
                if child:
                    raise FolderNotEmpty(f"folder {name} has subfolders")
                size = w.execute(
                    "SELECT total(size) FROM messages WHERE folder = ?", (row.id,)
                ).fetchone()[0]
                for table in ("messages", "structures", "expunged", "keywords"):
                    w.execute(f"DELETE FROM {table} WHERE folder = ?", (row.id,))
                w.execute("DELETE FROM folders WHERE id = ?", (row.id,))
                if row.subscribed:  # rfc9051:6.3.7 deleting does not unsubscribe
                    w.execute("INSERT OR IGNORE INTO kept_subscriptions VALUES (?)", (name,))
                self.adjust_used(w, -int(size))
                trash = self.root / "tmp" / f"deleted-{new_basename()}"
                os.rename(self.root / row.dirname, trash)
                fsync_dir(self.root)
            self._snapshots.drop(self.account, row.id)
        shutil.rmtree(trash, ignore_errors=True)

    def rename_folder(self, old: str, new: str) -> None:
        with self.wlock:
            w = self._writer()
            if old == "INBOX":
                self._rename_inbox(w, new)
                return
            moved: list[tuple[Path, Path]] = []
            try:
                with transaction(w):
                    self._row(w, old)
                    if folder_row(w, new) is not None:
                        raise FolderExists(f"folder {new} already exists")
                    for parent in parents(new):
                        if folder_row(w, parent) is None:
                            self._insert_folder(w, parent, None)
                    rows = [
                        FolderRow(*x)
                        for x in w.execute(f"SELECT {FOLDER_COLUMNS} FROM folders")
                        if x[1] == old or is_under(x[1], old)
                    ]
                    for row in rows:
                        name = new + row.name[len(old) :]
                        dirname = checked_dirname(name)
                        src, dst = self.root / row.dirname, self.root / dirname
                        if dst.exists():
                            raise FolderExists(f"folder {name} already exists on disk")
                        os.rename(src, dst)
                        moved.append((src, dst))
                        w.execute(
                            "UPDATE folders SET name = ?, dirname = ? WHERE id = ?",
                            (name, dirname, row.id),
                        )
                        w.execute("DELETE FROM kept_subscriptions WHERE name = ?", (name,))
                    fsync_dir(self.root)
            except BaseException:
                for src, dst in reversed(moved):
                    os.rename(dst, src)
                raise

    def _rename_inbox(self, w: sqlite3.Connection, new: str) -> None:
        # rfc3501:6.3.5 renaming INBOX moves its messages to the new folder; INBOX stays.
        with transaction(w):
            if folder_row(w, new) is not None:
                raise FolderExists(f"folder {new} already exists")
            for parent in parents(new):
                if folder_row(w, parent) is None:
                    self._insert_folder(w, parent, None)
            self._insert_folder(w, new, None)
            inbox = self._row(w, "INBOX")
            uids = [
                u for (u,) in w.execute("SELECT uid FROM messages WHERE folder = ?", (inbox.id,))
            ]
            transfer_rows(self, w, inbox, uids, self._row(w, new), move=True)

    def subscribe(self, name: str, subscribed: bool) -> None:
        with self.wlock:
            w = self._writer()
            with transaction(w):
                if (
                    not subscribed
                    and w.execute("DELETE FROM kept_subscriptions WHERE name = ?", (name,)).rowcount
                ):
                    return
                row = self._row(w, name)
                w.execute("UPDATE folders SET subscribed = ? WHERE id = ?", (subscribed, row.id))

    def subscriptions(self) -> list[str]:
        with self.rlock:
            r = self._reader()
            names = {n for (n,) in r.execute("SELECT name FROM folders WHERE subscribed")}
            names.update(n for (n,) in r.execute("SELECT name FROM kept_subscriptions"))
        return sorted(names)

    # -- reading messages -----------------------------------------------------------------------
    def _flags(self, text: str) -> frozenset[str]:
        fs = self._flagsets.get(text)
        if fs is None:
            fs = self._flagsets[text] = frozenset(text.split())
        return fs

    def _info_of(self, row: tuple[int, int, str, float, int, int, str]) -> MessageInfo:
        uid, modseq, flags, date, tz, size, uidl = row
        return MessageInfo(uid, modseq, self._flags(flags), date, tz, size, uidl)

    def messages(self, name: str) -> list[MessageInfo]:
        return self._snapshot(name, _values)

    def message_map(self, name: str) -> dict[int, MessageInfo]:
        return self._snapshot(name, dict.copy)

    def _snapshot(self, name: str, take: Callable[[dict[int, MessageInfo]], T]) -> T:
        """``take`` applied to the folder's up-to-date snapshot (inside the lock: the cached
        dict changes under it)."""
        self.fresh_row(name)
        save: list[Callable[[], None]] = []  # the snapshot file, written after the lock
        try:
            return self._messages(name, save, take)
        finally:
            for write in save:
                write()

    def _messages(
        self, name: str, save: list[Callable[[], None]], take: Callable[[dict[int, MessageInfo]], T]
    ) -> T:
        with self.rlock:
            r = self._reader()
            r.execute("BEGIN")
            try:
                row = self._row(r, name)
                cache = self._snapshots.get(self.account, row.id)
                from_disk = False  # loaded from its file: rewrite that if it was far behind
                changed = 0
                if cache is None or cache.uidvalidity != row.uidvalidity:
                    cache = self._disk_snapshot(row)
                    if cache is None:
                        cache = Snapshot(row.uidvalidity, row.highestmodseq)
                        with snapfile.gc_paused():
                            cache.infos = {
                                x[0]: self._info_of(x)
                                for x in r.execute(
                                    f"SELECT {_MSG_COLUMNS} FROM messages WHERE folder = ?"
                                    " ORDER BY uid",
                                    (row.id,),
                                )
                            }
                        save.append(self._snapshot_writer(r, row, cache))
                    else:
                        from_disk = True
                    self._snapshots.put(self.account, row.id, cache)
                if cache.modseq != row.highestmodseq:
                    last = next(reversed(cache.infos), 0)
                    unordered = False
                    for (uid,) in r.execute(
                        "SELECT uid FROM expunged WHERE folder = ? AND modseq > ?",
                        (row.id, cache.modseq),
                    ):
                        cache.infos.pop(uid, None)
                    for x in r.execute(
                        f"SELECT {_MSG_COLUMNS} FROM {_CHANGED} WHERE folder = ? AND modseq > ?"
                        " ORDER BY uid",
                        (row.id, cache.modseq),
                    ):
                        unordered |= x[0] < last and x[0] not in cache.infos
                        cache.infos[x[0]] = self._info_of(x)
                        changed += 1
                    if unordered:
                        cache.infos = dict(sorted(cache.infos.items()))
                    cache.modseq = row.highestmodseq
                    self._snapshots.put(self.account, row.id, cache)
                    if from_disk and changed >= snapfile.MIN_MESSAGES // 2:
                        save.append(self._snapshot_writer(r, row, cache))
                return take(cache.infos)
            finally:
                r.execute("COMMIT")

    def _disk_snapshot(self, row: FolderRow) -> Snapshot | None:
        """The folder's snapshot file, if it can be used (see ``snapfile``)."""
        got = snapfile.load(
            snapfile.path_for(self.root, row.id), row.uidvalidity, row.highestmodseq, self._flags
        )
        if got is None:
            return None
        snap = Snapshot(row.uidvalidity, got[0])
        snap.infos = got[1]
        return snap

    def _snapshot_writer(
        self, r: sqlite3.Connection, row: FolderRow, snap: Snapshot
    ) -> Callable[[], None]:
        """What writes a large folder's snapshot file, with the counts as of its MODSEQ: the
        counts and the list are taken now (the reader ``r`` is inside the transaction that
        read ``snap``, under ``rlock``); the file is written by the caller after the lock."""
        if len(snap.infos) < snapfile.MIN_MESSAGES:
            return lambda: None
        counts: snapfile.Counts = r.execute(
            "SELECT count(*), total(seen = 0), total(recent), total(size) FROM messages"
            " WHERE folder = ?",
            (row.id,),
        ).fetchone()
        self._counts[row.id] = ((row.uidvalidity, snap.modseq), counts)
        path, infos = snapfile.path_for(self.root, row.id), list(snap.infos.values())
        modseq = snap.modseq
        return lambda: snapfile.save(path, row.uidvalidity, modseq, counts, infos)

    def changes_since(self, name: str, modseq: int) -> Changes:
        """Every command of a session with this folder selected asks this (so that changes by
        other sessions and processes are seen at once): when the index has had no commit by
        any connection, of any process, since the folder's row was last read here (SQLite's
        ``PRAGMA data_version`` on the reader connection, documented to change with every
        commit by another connection) and its Maildir directories have not moved (mail dropped in
        by another program), the answer is "nothing after ``modseq``" without a query:
        one pragma and two stats instead of a transaction of five statements."""
        with self.rlock:
            version = self._reader().execute("PRAGMA data_version").fetchone()[0]
            known = self._quiet.get(name)
        if known is not None and known[0] == version and modseq >= known[1].highestmodseq:
            _, row, new_dir, cur_dir = known
            try:
                moved = (os.stat(new_dir).st_mtime_ns, os.stat(cur_dir).st_mtime_ns) != (
                    row.new_mtime,
                    row.cur_mtime,
                )
            except FileNotFoundError:
                moved = True
            if not moved:
                return Changes(row.highestmodseq, (), ())
        self.fresh_row(name)
        with self.rlock:
            r = self._reader()
            r.execute("BEGIN")
            try:
                # The version first: the row read after it, in the same snapshot, is at least
                # as new as what the version stands for.
                version = r.execute("PRAGMA data_version").fetchone()[0]
                row = self._row(r, name)
                folder_dir = str(self.root / row.dirname)
                self._quiet[name] = (version, row, folder_dir + "/new", folder_dir + "/cur")
                changed = tuple(
                    self._info_of(x)
                    for x in r.execute(
                        f"SELECT {_MSG_COLUMNS} FROM {_CHANGED} WHERE folder = ? AND modseq > ?"
                        " ORDER BY uid",
                        (row.id, modseq),
                    )
                )
                expunged = tuple(
                    u
                    for (u,) in r.execute(
                        "SELECT uid FROM expunged WHERE folder = ? AND modseq > ? ORDER BY uid",
                        (row.id, modseq),
                    )
                )
                return Changes(row.highestmodseq, changed, expunged)
            finally:
                r.execute("COMMIT")

    def folder_dir(self, name: str) -> Path:
        with self.rlock:
            return self.root / self._row(self._reader(), name).dirname

    def highestmodseq(self, name: str) -> int:
        return self.fresh_row(name).highestmodseq

    def _path(self, name: str, uid: int) -> tuple[FolderRow, str, str]:
        with self.rlock:
            r = self._reader()
            row = self._row(r, name)
            found = r.execute(
                "SELECT path, uidl FROM messages WHERE folder = ? AND uid = ?", (row.id, uid)
            ).fetchone()
        if found is None:
            raise NoSuchMessage(f"no message with UID {uid}")
        return row, found[0], found[1]

    def read(self, name: str, uid: int) -> bytes:
        row, path, uidl = self._path(name, uid)
        try:
            return (self.root / row.dirname / path).read_bytes()
        except FileNotFoundError:
            pass
        # Renamed by another process or program since we looked: find it by its unique base.
        for sub in ("cur", "new"):
            for entry in os.scandir(self.root / row.dirname / sub):
                if parse_filename(entry.name)[0] == uidl:
                    try:
                        return Path(entry.path).read_bytes()
                    except FileNotFoundError:
                        continue
        raise NoSuchMessage(f"message with UID {uid} is gone")

    def structure(self, name: str, uid: int) -> MessageStructure:
        with self.rlock:
            r = self._reader()
            row = self._row(r, name)
            found = r.execute(
                "SELECT data FROM structures WHERE folder = ? AND uid = ?", (row.id, uid)
            ).fetchone()
        if found is not None:
            try:
                return serial.loads(found[0])
            except ValueError:
                pass
        structure = scan(self.read(name, uid))
        with self.wlock:
            w = self._writer()
            with transaction(w):
                w.execute(
                    "INSERT OR REPLACE INTO structures (folder, uid, data) VALUES (?, ?, ?)",
                    (row.id, uid, serial.dumps(structure)),
                )
        return structure

    def structures(self, name: str, uids: list[int]) -> dict[int, MessageStructure]:
        out: dict[int, MessageStructure] = {}
        with self.rlock:
            r = self._reader()
            row = self._row(r, name)
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for uid, data in r.execute(
                    f"SELECT uid, data FROM structures WHERE folder = ? AND uid IN ({marks})",
                    (row.id, *chunk),
                ):
                    try:
                        out[uid] = serial.loads(data)
                    except ValueError:
                        pass
        for uid in uids:
            if uid not in out:
                try:
                    out[uid] = self.structure(name, uid)
                except NoSuchMessage:
                    pass
        return out

    def used(self) -> int:
        with self.rlock:
            return int(
                self._reader().execute("SELECT value FROM meta WHERE key = 'used'").fetchone()[0]
            )

    # -- changing messages ----------------------------------------------------------------------
    def adjust_used(self, w: sqlite3.Connection, delta: int) -> None:
        if delta:
            w.execute("UPDATE meta SET value = value + ? WHERE key = 'used'", (delta,))

    def finish(self, w: sqlite3.Connection, row: FolderRow, uidnext: int, modseq: int) -> None:
        new_mtime, cur_mtime = dir_mtimes(self.root / row.dirname)
        w.execute(
            "UPDATE folders SET uidnext = ?, highestmodseq = ?, new_mtime = ?, cur_mtime = ?"
            " WHERE id = ?",
            (uidnext, modseq, new_mtime, cur_mtime, row.id),
        )
