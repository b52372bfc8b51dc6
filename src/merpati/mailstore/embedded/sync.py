"""Reading the Maildir into the index: the first build (or rebuild) of an account's index and
the pickup of changes other programs make (mail dropped into ``new/``, files deleted or renamed
with new flags by mutt or Dovecot), plus the clean-up of orphaned ``tmp/`` files at open.

Every function here runs in a worker thread with the account's write lock held and inside a
``BEGIN IMMEDIATE`` transaction opened by the caller, so another process cannot place files or
allocate UIDs while the directory listing is compared with the index. It never touches the
content of files it already knows, and deletes only files that the index says were expunged.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from merpati.mailstore.api import DEFAULT_FOLDERS, MAX_FOLDER_KEYWORDS, TooManyKeywords
from merpati.mailstore.embedded.layout import (
    KEYWORD_LETTERS,
    UIDVALIDITY_FILE,
    folder_dirname,
    folder_name,
    make_maildir,
    parse_filename,
    read_keywords_file,
    tmp_owner_dead,
    write_keywords_file,
)
from merpati.mailstore.names import new_uidvalidity
from merpati.mime import serial
from merpati.mime.scan import scan

TMP_MAX_AGE = 36 * 3600  # the Maildir spec's limit for files left in tmp/
_DEFAULT_SPECIAL = dict(DEFAULT_FOLDERS)


@dataclass(frozen=True, slots=True)
class FolderRow:
    id: int
    name: str
    dirname: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    subscribed: bool
    new_mtime: int
    cur_mtime: int


FOLDER_COLUMNS = (
    "id, name, dirname, uidvalidity, uidnext, highestmodseq, special_use, subscribed,"
    " new_mtime, cur_mtime"
)


def folder_row(conn: sqlite3.Connection, name: str) -> FolderRow | None:
    row = conn.execute(f"SELECT {FOLDER_COLUMNS} FROM folders WHERE name = ?", (name,)).fetchone()
    return None if row is None else FolderRow(*row)


def keyword_letters(conn: sqlite3.Connection, row: FolderRow) -> dict[str, str]:
    """keyword -> its Dovecot letter in this folder (keywords past the 26th have none)."""
    return {
        name: KEYWORD_LETTERS[idx]
        for idx, name in conn.execute(
            "SELECT idx, name FROM keywords WHERE folder = ? AND idx < ?",
            (row.id, len(KEYWORD_LETTERS)),
        )
    }


def assign_keywords(
    conn: sqlite3.Connection, root: Path, row: FolderRow, flags: Iterable[str]
) -> dict[str, str]:
    """Record the keywords of ``flags`` the folder has not used yet: each gets a letter while
    any of the 26 is free (mirrored into the folder's ``dovecot-keywords``), later ones an
    index past the letters. Raises TooManyKeywords past MAX_FOLDER_KEYWORDS. Returns keyword ->
    letter. In a write transaction."""
    known = {
        name: idx
        for idx, name in conn.execute("SELECT idx, name FROM keywords WHERE folder = ?", (row.id,))
    }
    letters = {k: KEYWORD_LETTERS[i] for k, i in known.items() if i < len(KEYWORD_LETTERS)}
    new = sorted({f for f in flags if not f.startswith("\\") and f not in known})
    if not new:
        return letters
    if len(known) + len(new) > MAX_FOLDER_KEYWORDS:
        raise TooManyKeywords(f"folder {row.name} uses {len(known)} keywords")
    used = set(known.values())
    free = [i for i in range(len(KEYWORD_LETTERS)) if i not in used]
    beyond = max(max(used, default=-1) + 1, len(KEYWORD_LETTERS))
    lettered = False
    for keyword in new:
        if free:
            idx = free.pop(0)
            letters[keyword] = KEYWORD_LETTERS[idx]
            lettered = True
        else:
            idx, beyond = beyond, beyond + 1
        conn.execute(
            "INSERT INTO keywords (folder, idx, name) VALUES (?, ?, ?)", (row.id, idx, keyword)
        )
    if lettered:
        write_keywords_file(
            root / row.dirname, {KEYWORD_LETTERS.index(v): k for k, v in letters.items()}
        )
    return letters


def dir_mtimes(folder_dir: Path) -> tuple[int, int]:
    try:
        return (folder_dir / "new").stat().st_mtime_ns, (folder_dir / "cur").stat().st_mtime_ns
    except FileNotFoundError:
        return 0, 0


def next_uidvalidity(root: Path) -> int:
    """A UIDVALIDITY above any this Maildir had before (kept in a small file, as Dovecot does)."""
    path = root / UIDVALIDITY_FILE
    try:
        last = int(path.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        last = 0
    value = max(new_uidvalidity(), last + 1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value + 64}\n")  # room for the folders created in this build
    os.replace(tmp, path)
    return value


def clean_tmp(root: Path) -> int:
    """Remove tmp/ files whose writer died (or older than the Maildir limit); returns count."""
    removed = 0
    now = time.time()
    for folder_dir in [root, *(p for p in root.iterdir() if p.name.startswith("."))]:
        tmp = folder_dir / "tmp"
        try:
            entries = list(os.scandir(tmp))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name.startswith("deleted-"):
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed += 1
                    continue
                if tmp_owner_dead(entry.name) or now - entry.stat().st_mtime > TMP_MAX_AGE:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def build(conn: sqlite3.Connection, root: Path) -> None:
    """First build (or rebuild) of the index from the Maildir, if not done yet. In a txn."""
    built = conn.execute("SELECT value FROM meta WHERE key = 'built'").fetchone()
    if built is not None:
        return
    names: dict[str, str] = {"INBOX": ""}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        name = folder_name(entry.name) if entry.is_dir() else None
        if name is not None and name != "INBOX" and (Path(entry.path) / "cur").is_dir():
            names.setdefault(name, entry.name)
    for name, _ in DEFAULT_FOLDERS:
        names.setdefault(name, folder_dirname(name))
    uidvalidity = next_uidvalidity(root)
    for i, (name, dirname) in enumerate(sorted(names.items())):
        make_maildir(root / dirname)
        conn.execute(
            "INSERT INTO folders (name, dirname, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
            (name, dirname, uidvalidity + i, _DEFAULT_SPECIAL.get(name)),
        )
        row = folder_row(conn, name)
        assert row is not None
        for idx, keyword in read_keywords_file(root / dirname).items():
            conn.execute(
                "INSERT OR IGNORE INTO keywords (folder, idx, name) VALUES (?, ?, ?)",
                (row.id, idx, keyword),
            )
        sync_folder(conn, root, row)
    used = conn.execute("SELECT total(size) FROM messages").fetchone()[0]
    conn.execute("UPDATE meta SET value = ? WHERE key = 'used'", (int(used),))
    conn.execute("INSERT INTO meta (key, value) VALUES ('built', ?)", (time.time(),))


def sync_folder(conn: sqlite3.Connection, root: Path, row: FolderRow) -> int:
    """Bring one folder's index in line with its directory; returns the byte-count change."""
    folder_dir = root / row.dirname
    new_mtime, cur_mtime = dir_mtimes(folder_dir)  # before listing: later changes rescan
    known: dict[str, tuple[int, str, str, int]] = {
        uidl: (uid, path, flags, size)
        for uid, uidl, path, flags, size in conn.execute(
            "SELECT uid, uidl, path, flags, size FROM messages WHERE folder = ?", (row.id,)
        )
    }
    letters = keyword_letters(conn, row)
    by_letter = {v: k for k, v in letters.items()}
    mapped = set(letters)
    seen: set[str] = set()
    found: list[tuple[int, str, str, frozenset[str]]] = []  # (mtime_ns, subdir/name, base, flags)
    modseq = row.highestmodseq
    delta = 0
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(folder_dir / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            base, fflags = parse_filename(entry.name, by_letter)
            rel = f"{sub}/{entry.name}"
            if base in known:
                seen.add(base)
                uid, path, flags_text, _ = known[base]
                if path != rel:
                    flags = set(flags_text.split())
                    if sub == "cur":
                        # File name wins for what it can say; keywords without a letter
                        # stay as the index has them.
                        system = {f for f in flags if f.startswith("\\")}
                        flags = (flags - system - mapped) | set(fflags)
                    modseq += 1
                    conn.execute(
                        "UPDATE messages SET path = ?, flags = ?, seen = ?, recent = 0,"
                        " modseq = ? WHERE folder = ? AND uid = ?",
                        (rel, " ".join(sorted(flags)), "\\Seen" in flags, modseq, row.id, uid),
                    )
                continue
            try:
                found.append((entry.stat().st_mtime_ns, rel, base, fflags))
            except FileNotFoundError:
                continue
    for base, (uid, _, _, size) in known.items():
        if base not in seen:  # removed by another program: expunged
            modseq += 1
            conn.execute("DELETE FROM messages WHERE folder = ? AND uid = ?", (row.id, uid))
            conn.execute("DELETE FROM structures WHERE folder = ? AND uid = ?", (row.id, uid))
            conn.execute(
                "INSERT INTO expunged (folder, uid, modseq, uidl) VALUES (?, ?, ?, ?)",
                (row.id, uid, modseq, base),
            )
            delta -= size
    uidnext = row.uidnext
    for mtime_ns, rel, base, fflags in sorted(found):
        file = folder_dir / rel
        if conn.execute(
            "SELECT 1 FROM expunged WHERE folder = ? AND uidl = ?", (row.id, base)
        ).fetchone():
            file.unlink(missing_ok=True)  # expunged, but the unlink did not happen (crash)
            continue
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            continue
        modseq += 1
        conn.execute(
            "INSERT OR IGNORE INTO messages (folder, uid, modseq, flags, seen, recent,"
            " internaldate, tz, size, uidl, path) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (
                row.id,
                uidnext,
                modseq,
                " ".join(sorted(fflags)),
                "\\Seen" in fflags,
                rel.startswith("new/"),
                mtime_ns / 1e9,
                len(data),
                base,
                rel,
            ),
        )
        conn.execute(
            "INSERT OR REPLACE INTO structures (folder, uid, data) VALUES (?, ?, ?)",
            (row.id, uidnext, serial.dumps(scan(data))),
        )
        uidnext += 1
        delta += len(data)
    conn.execute(
        "UPDATE folders SET uidnext = ?, highestmodseq = ?, new_mtime = ?, cur_mtime = ?"
        " WHERE id = ?",
        (uidnext, modseq, new_mtime, cur_mtime, row.id),
    )
    return delta
