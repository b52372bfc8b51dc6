"""Export and import of one account's mail, through the mail store API (any backend).

Export writes either a Maildir++ tree (INBOX at the root, folders as ``.A.B``, flags in
``:2,`` file names, keywords as Dovecot letters with a ``dovecot-keywords`` file, the internal
date as the file's mtime) or one mboxrd file per folder (``INBOX.mbox``, ``A/B.mbox``).
Import reads a Maildir, a Maildir++ tree, a single mbox file (into INBOX) or a directory of
``.mbox`` files, keeping flags, keywords and internal dates; folders are created as needed.
It does not touch the account database (the CLI checks that the account exists).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from merpati.mailstore import mboxrd
from merpati.mailstore.api import FolderExists, Mailbox
from merpati.mailstore.embedded.layout import (
    KEYWORD_LETTERS,
    filename,
    folder_dirname,
    folder_name,
    make_maildir,
    parse_filename,
    read_keywords_file,
    write_keywords_file,
)

IMPORT_BATCH = 200  # messages committed together on import


class _BulkMailbox(Protocol):
    async def append_many(
        self, folder: str, items: list[tuple[bytes, Iterable[str], float | None]]
    ) -> list[Any]: ...


async def export_account(box: Mailbox, dest: Path, fmt: str) -> tuple[int, int]:
    """Write every folder of ``box`` under ``dest``; returns (folders, messages)."""
    dest.mkdir(parents=True, exist_ok=True)
    folders = await box.folders()
    count = 0
    for info in folders:
        msgs = await box.messages(info.name)
        if fmt == "mbox":
            target = dest / (info.name + ".mbox")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for m in msgs:
                    out.write(
                        mboxrd.write_message(
                            await box.read(info.name, m.uid), m.flags, m.internaldate
                        )
                    )
            count += len(msgs)
            continue
        folder_dir = dest / folder_dirname(info.name)
        make_maildir(folder_dir)
        if info.name != "INBOX":
            (folder_dir / "maildirfolder").touch()
        keywords = sorted({f for m in msgs for f in m.flags if not f.startswith("\\")})
        letters = dict(zip(keywords, KEYWORD_LETTERS, strict=False))
        if letters:
            write_keywords_file(
                folder_dir, {KEYWORD_LETTERS.index(v): k for k, v in letters.items()}
            )
        for m in msgs:
            base = f"{int(m.internaldate)}.M{m.uid:010d}P{os.getpid()}.merpati"
            path = folder_dir / "cur" / filename(base, m.size, m.flags, letters)
            path.write_bytes(await box.read(info.name, m.uid))
            os.utime(path, (m.internaldate, m.internaldate))
            count += 1
    return len(folders), count


def _maildir_messages(folder_dir: Path) -> Iterator[tuple[Path, frozenset[str], float]]:
    by_letter = {KEYWORD_LETTERS[i]: kw for i, kw in read_keywords_file(folder_dir).items()}
    entries: list[tuple[tuple[int, str], Path]] = []
    for sub in ("cur", "new"):
        if not (folder_dir / sub).is_dir():
            continue
        for entry in os.scandir(folder_dir / sub):
            if entry.is_file() and not entry.name.startswith("."):
                prefix = entry.name.split(".", 1)[0]
                key = (int(prefix) if prefix.isdigit() else 1 << 62, entry.name)
                entries.append((key, Path(entry.path)))
    for _, path in sorted(entries):
        yield path, parse_filename(path.name, by_letter)[1], path.stat().st_mtime


def _sources(src: Path) -> Iterator[tuple[str, str, Path]]:
    """(folder, kind "maildir"|"mbox", path) for everything importable under ``src``."""
    if src.is_file():
        yield "INBOX", "mbox", src
        return
    if (src / "cur").is_dir():
        yield "INBOX", "maildir", src
        for entry in sorted(os.scandir(src), key=lambda e: e.name):
            name = folder_name(entry.name) if entry.is_dir() else None
            if name and name != "INBOX" and (Path(entry.path) / "cur").is_dir():
                yield name, "maildir", Path(entry.path)
        return
    for path in sorted(src.rglob("*.mbox")):
        rel = path.relative_to(src).as_posix()[: -len(".mbox")]
        yield ("INBOX" if rel.upper() == "INBOX" else rel), "mbox", path


async def import_account(box: Mailbox, src: Path) -> tuple[int, int]:
    """Import everything under ``src`` into ``box``; returns (folders, messages)."""
    bulk: _BulkMailbox | None = box if hasattr(box, "append_many") else None  # type: ignore[assignment]
    folders = 0
    count = 0
    for folder, kind, path in _sources(src):
        try:
            await box.create_folder(folder)
        except FolderExists:
            pass
        folders += 1
        batch: list[tuple[bytes, Iterable[str], float | None]] = []
        if kind == "maildir":
            items: Iterable[tuple[bytes, frozenset[str], float | None]] = (
                (p.read_bytes(), flags, date) for p, flags, date in _maildir_messages(path)
            )
        else:
            items = mboxrd.read_messages(path.read_bytes())
        for data, flags, date in items:
            batch.append((data, flags, date))
            if len(batch) >= IMPORT_BATCH:
                count += await _flush(box, bulk, folder, batch)
                batch = []
        count += await _flush(box, bulk, folder, batch)
    return folders, count


async def _flush(
    box: Mailbox,
    bulk: _BulkMailbox | None,
    folder: str,
    batch: list[tuple[bytes, Iterable[str], float | None]],
) -> int:
    if not batch:
        return 0
    if bulk is not None:
        await bulk.append_many(folder, batch)
    else:
        for data, flags, date in batch:
            await box.append(folder, data, flags, date)
    return len(batch)
