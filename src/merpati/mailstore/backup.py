"""Online backup and restore of the whole data directory.

``backup`` may run while ``merpati serve`` runs: every SQLite database under the data dir
(accounts, queue, mail indexes; recognised by their file header) is copied first with the
SQLite backup API, which gives a consistent snapshot of each; then message files in Maildir
``cur/``/``new/`` are hard-linked (they are never changed in place, only renamed or unlinked;
copied when the destination is on another file system) and every other file is copied.
``tmp/`` directories, WAL/SHM/journal files are skipped. A message appended after the snapshot
of its index is picked up from the Maildir when the restored store opens; one expunged after
it is dropped then: the restored store is consistent without repair.

``restore`` fills an empty (or missing) data dir from a backup. It refuses a non-empty one, so
it never mixes two generations; stop the server before restoring.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from merpati.errors import OperationalError
from merpati.mailstore.embedded.layout import sync_filesystem

SQLITE_HEADER = b"SQLite format 3\x00"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal")


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:
        return False


def _is_content(rel: Path) -> bool:
    """A Maildir message file (immutable content) under mail/."""
    return rel.parts[:1] == ("mail",) and rel.parent.name in ("cur", "new")


def _in_tmp(rel: Path) -> bool:
    return rel.parts[:1] == ("mail",) and "tmp" in rel.parts[:-1]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _find_renamed(src: Path) -> Path | None:
    """A Maildir file renamed (new flags, new/ -> cur/) since it was listed."""
    base = src.name.split(":", 1)[0].split(",", 1)[0]
    for sub in ("cur", "new"):
        folder = src.parent.parent / sub
        try:
            for entry in os.scandir(folder):
                if entry.name.split(":", 1)[0].split(",", 1)[0] == base:
                    return Path(entry.path)
        except FileNotFoundError:
            continue
    return None


def _check_dest(dest: Path, what: str) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OperationalError(f"{what} {dest} exists and is not an empty directory")


def backup(data_dir: Path, dest: Path) -> tuple[int, int]:
    """Copy ``data_dir`` to ``dest``; returns (databases, files)."""
    data_dir, dest = data_dir.resolve(), dest.resolve()
    if not data_dir.is_dir():
        raise OperationalError(f"data directory {data_dir} does not exist")
    if dest == data_dir or data_dir in dest.parents:
        raise OperationalError("the backup destination cannot be inside the data directory")
    _check_dest(dest, "backup destination")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: list[Path] = []
    databases: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        rel_dir = Path(dirpath).relative_to(data_dir)
        for d in dirnames:
            (dest / rel_dir / d).mkdir(exist_ok=True, mode=0o700)
        for name in filenames:
            rel = rel_dir / name
            if name.endswith(_SKIP_SUFFIXES) or _in_tmp(rel):
                continue
            (databases if _is_sqlite(data_dir / rel) else files).append(rel)
    for rel in databases:  # first: every index snapshot predates the files copied after it
        src = sqlite3.connect(data_dir / rel, timeout=30)
        try:
            dst = sqlite3.connect(dest / rel)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    copied = 0
    for rel in files:
        src_path, dst_path = data_dir / rel, dest / rel
        try:
            if _is_content(rel):
                _link_or_copy(src_path, dst_path)
            else:
                shutil.copy2(src_path, dst_path)
        except FileNotFoundError:
            moved = _find_renamed(src_path) if _is_content(rel) else None
            if moved is None:
                continue  # expunged or removed meanwhile
            _link_or_copy(moved, dst_path.with_name(moved.name))
        copied += 1
    sync_filesystem(dest)
    return len(databases), copied


def restore(src: Path, data_dir: Path) -> int:
    """Fill an empty ``data_dir`` from the backup ``src``; returns the number of files."""
    src, data_dir = src.resolve(), data_dir.resolve()
    if not src.is_dir():
        raise OperationalError(f"backup {src} does not exist")
    _check_dest(data_dir, "data directory")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = Path(dirpath).relative_to(src)
        for d in dirnames:
            (data_dir / rel_dir / d).mkdir(exist_ok=True, mode=0o700)
        for name in filenames:
            rel = rel_dir / name
            if _is_content(rel):
                _link_or_copy(src / rel, data_dir / rel)
            else:
                shutil.copy2(src / rel, data_dir / rel)
            count += 1
    sync_filesystem(data_dir)
    return count
