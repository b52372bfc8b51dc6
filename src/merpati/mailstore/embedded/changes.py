"""Changes to messages of one account, in worker threads: flag stores, expunge, copy and move.

Same invariants as ``merpati.mailstore.embedded.account``: each runs under the account's write
lock in one ``BEGIN IMMEDIATE`` transaction; files are renamed or hard-linked inside it (and
put back if it fails); files of expunged messages are unlinked only after the COMMIT, so a
crash can leave an extra file (removed by the next sync through its tombstone), never lose
one. Every changed message gets a new MODSEQ, and the folder's HIGHESTMODSEQ follows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from merpati.durable import fsync_dir
from merpati.mailstore.api import InvalidName, MessageInfo, QuotaExceeded
from merpati.mailstore.embedded.index import transaction
from merpati.mailstore.embedded.layout import filename, new_basename
from merpati.mailstore.embedded.sync import FolderRow, assign_keywords
from merpati.mailstore.names import apply_flags

if TYPE_CHECKING:
    from merpati.mailstore.embedded.account import Account


def store_flags(
    acct: Account,
    name: str,
    uids: Sequence[int],
    mode: str,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> tuple[list[MessageInfo], list[int]]:
    changed: list[MessageInfo] = []
    refused: list[int] = []
    renames: list[tuple[Path, Path]] = []
    wanted = sorted(set(uids))
    acct.fresh_row(name)
    with acct.wlock:
        w = acct._writer()
        try:
            with transaction(w):
                row = acct._row(w, name)
                modseq = row.highestmodseq
                folder_dir = acct.root / row.dirname
                # removing a keyword never counts against MAX_FOLDER_KEYWORDS
                letters = assign_keywords(w, acct.root, row, () if mode == "remove" else flags)
                for i in range(0, len(wanted), 500):
                    chunk = wanted[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = w.execute(
                        f"SELECT uid, modseq, flags, internaldate, tz, size, uidl, path"
                        f" FROM messages WHERE folder = ? AND uid IN ({marks}) ORDER BY uid",
                        (row.id, *chunk),
                    ).fetchall()
                    for uid, mseq, ftext, date, tz, size, uidl, path in rows:
                        if unchanged_since is not None and mseq > unchanged_since:
                            refused.append(uid)  # rfc7162:3.2 UNCHANGEDSINCE
                            continue
                        old = acct._flags(ftext)
                        new = apply_flags(old, mode, flags)
                        if new == old:
                            continue
                        modseq += 1
                        new_path = "cur/" + filename(uidl, size, new, letters)
                        if new_path != path:
                            src, dst = folder_dir / path, folder_dir / new_path
                            os.rename(src, dst)
                            renames.append((src, dst))
                        text = " ".join(sorted(new))
                        w.execute(
                            "UPDATE messages SET flags = ?, seen = ?, recent = 0,"
                            " modseq = ?, path = ? WHERE folder = ? AND uid = ?",
                            (text, "\\Seen" in new, modseq, new_path, row.id, uid),
                        )
                        changed.append(
                            MessageInfo(uid, modseq, acct._flags(text), date, tz, size, uidl)
                        )
                if changed:
                    acct.finish(w, row, row.uidnext, modseq)
        except BaseException:
            for src, dst in reversed(renames):
                try:
                    os.rename(dst, src)
                except OSError:
                    pass
            raise
    return changed, refused


def expunge(acct: Account, name: str, uids: Sequence[int] | None) -> list[int]:
    acct.fresh_row(name)
    with acct.wlock:
        w = acct._writer()
        with transaction(w):
            row = acct._row(w, name)
            rows = w.execute(
                "SELECT uid, uidl, path, size FROM messages WHERE folder = ? AND"
                " (' ' || flags || ' ') LIKE '% \\Deleted %' ORDER BY uid",
                (row.id,),
            ).fetchall()
            if uids is not None:
                allowed = set(uids)
                rows = [x for x in rows if x[0] in allowed]
            modseq = row.highestmodseq
            for uid, uidl, _, _ in rows:
                modseq += 1
                _drop(w, row, uid, uidl, modseq)
            acct.adjust_used(w, -sum(x[3] for x in rows))
            if rows:
                acct.finish(w, row, row.uidnext, modseq)
        for _, _, path, _ in rows:  # after COMMIT: a crash leaves files the sync removes
            (acct.root / row.dirname / path).unlink(missing_ok=True)
        if rows:
            os.utime(acct.root / row.dirname / "cur")
    return [x[0] for x in rows]


def _drop(w: sqlite3.Connection, row: FolderRow, uid: int, uidl: str, modseq: int) -> None:
    w.execute("DELETE FROM messages WHERE folder = ? AND uid = ?", (row.id, uid))
    w.execute("DELETE FROM structures WHERE folder = ? AND uid = ?", (row.id, uid))
    w.execute(
        "INSERT INTO expunged (folder, uid, modseq, uidl) VALUES (?, ?, ?, ?)",
        (row.id, uid, modseq, uidl),
    )


def transfer(
    acct: Account, src: str, uids: Sequence[int], dst: str, move: bool, limit: int | None
) -> tuple[int, list[tuple[int, int]]]:
    """COPY or MOVE; returns (destination UIDVALIDITY, [(old UID, new UID)])."""
    acct.fresh_row(src)
    acct.fresh_row(dst)
    with acct.wlock:
        w = acct._writer()
        with transaction(w):
            source, target = acct._row(w, src), acct._row(w, dst)
            if move and source.id == target.id:
                raise InvalidName("cannot move messages into the folder they are in")
            if not move and limit is not None:
                extra = _sum_sizes(w, source, uids)
                used = int(w.execute("SELECT value FROM meta WHERE key = 'used'").fetchone()[0])
                if used + extra > limit:
                    raise QuotaExceeded("mailbox is full")
            pairs = transfer_rows(acct, w, source, sorted(set(uids)), target, move)
    return target.uidvalidity, pairs


def _sum_sizes(w: sqlite3.Connection, row: FolderRow, uids: Iterable[int]) -> int:
    total = 0
    wanted = sorted(set(uids))
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        total += w.execute(
            f"SELECT total(size) FROM messages WHERE folder = ? AND uid IN"
            f" ({','.join('?' * len(chunk))})",
            (row.id, *chunk),
        ).fetchone()[0]
    return int(total)


def transfer_rows(
    acct: Account,
    w: sqlite3.Connection,
    source: FolderRow,
    uids: Sequence[int],
    target: FolderRow,
    move: bool,
) -> list[tuple[int, int]]:
    """Inside a transaction: hard-link (copy) or rename (move) files into the target."""
    pairs: list[tuple[int, int]] = []
    placed: list[tuple[Path, Path, bool]] = []
    src_dir, dst_dir = acct.root / source.dirname, acct.root / target.dirname
    uidnext, dst_modseq, src_modseq = target.uidnext, target.highestmodseq, source.highestmodseq
    added = 0
    try:
        for i in range(0, len(uids), 500):
            chunk = list(uids[i : i + 500])
            rows = w.execute(
                f"SELECT uid, flags, internaldate, tz, size, uidl, path FROM messages"
                f" WHERE folder = ? AND uid IN ({','.join('?' * len(chunk))}) ORDER BY uid",
                (source.id, *chunk),
            ).fetchall()
            letters = assign_keywords(w, acct.root, target, {f for x in rows for f in x[1].split()})
            for uid, ftext, date, tz, size, uidl, path in rows:
                flags = acct._flags(ftext)
                base = new_basename()  # never reuse a base: tombstones name bases
                new_path = "cur/" + filename(base, size, flags, letters)
                src_file, dst_file = src_dir / path, dst_dir / new_path
                if move:
                    os.rename(src_file, dst_file)
                else:
                    try:
                        os.link(src_file, dst_file)
                    except OSError:
                        shutil.copyfile(src_file, dst_file)
                placed.append((src_file, dst_file, move))
                dst_modseq += 1
                w.execute(
                    "INSERT INTO messages (folder, uid, modseq, flags, seen, recent,"
                    " internaldate, tz, size, uidl, path)"
                    " VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    (
                        target.id,
                        uidnext,
                        dst_modseq,
                        ftext,
                        "\\Seen" in flags,
                        date,
                        tz,
                        size,
                        base,
                        new_path,
                    ),
                )
                w.execute(
                    "INSERT INTO structures (folder, uid, data) SELECT ?, ?, data FROM"
                    " structures WHERE folder = ? AND uid = ?",
                    (target.id, uidnext, source.id, uid),
                )
                if move:
                    src_modseq += 1
                    _drop(w, source, uid, uidl, src_modseq)
                else:
                    added += size
                pairs.append((uid, uidnext))
                uidnext += 1
        if pairs:
            fsync_dir(dst_dir / "cur")
            if move:
                fsync_dir(src_dir / "new")
                fsync_dir(src_dir / "cur")
                acct.finish(w, source, source.uidnext, src_modseq)
            acct.finish(w, target, uidnext, dst_modseq)
            acct.adjust_used(w, added)
    except BaseException:
        for src_file, dst_file, was_move in reversed(placed):
            try:
                if was_move:
                    os.rename(dst_file, src_file)
                else:
                    os.unlink(dst_file)
            except OSError:
                pass
        raise
    return pairs
