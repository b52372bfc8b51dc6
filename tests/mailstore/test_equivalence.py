"""The embedded backend behaves exactly like the memory backend (the reference semantics):
the same random sequence of operations gives the same observable state in both (UIDs,
MODSEQs, flags, counts, contents), apart from UIDVALIDITY and UIDL values."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from merpati.mailstore.api import FlagMode, MailStoreError
from merpati.mailstore.embedded import EmbeddedMailStore
from merpati.mailstore.memory import MemoryMailStore

A = "alice@example.org"
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Work", "Later"]
FOLDERS = ["INBOX", "Archive", "Trash", "Lists/Python"]


async def _apply(box: Any, op: tuple[Any, ...]) -> object:
    kind, args = op[0], op[1:]
    try:
        if kind == "append":
            return (await box.append(*args)).uid
        if kind == "flags":
            changed, refused = await box.store_flags(*args)
            return [(m.uid, m.modseq, sorted(m.flags)) for m in changed], refused
        if kind in ("copy", "move"):
            return (await getattr(box, kind)(*args)).pairs
        if kind == "expunge":
            return await box.expunge(*args)
        if kind == "create":
            return await box.create_folder(*args)
    except MailStoreError as exc:
        return type(exc).__name__
    raise AssertionError(kind)


async def _state(box: Any) -> object:
    out = []
    for info in await box.folders():
        msgs = await box.messages(info.name)
        out.append(
            (
                info.name,
                info.uidnext,
                info.highestmodseq,
                info.messages,
                info.unseen,
                info.recent,
                info.size,
                [(m.uid, m.modseq, sorted(m.flags), m.size, m.internaldate) for m in msgs],
                [await box.read(info.name, m.uid) for m in msgs],
                (await box.changes_since(info.name, 3)).expunged,
            )
        )
    return out


def _ops(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = [("create", "Lists/Python")]
    for i in range(n):
        folder = rng.choice(FOLDERS)
        uids = sorted(rng.sample(range(1, 12), rng.randint(0, 4)))
        kind = rng.choice(
            ["append", "append", "append", "flags", "flags", "copy", "move", "expunge"]
        )
        if kind == "append":
            body = b"Subject: %d\r\n\r\n" % i + b"x" * rng.randint(0, 300)
            ops.append(("append", folder, body, rng.sample(FLAGS, rng.randint(0, 2)), 1e9 + i))
        elif kind == "flags":
            since = rng.choice([None, None, rng.randint(1, 30)])
            mode = rng.choice(list(FlagMode))
            ops.append(("flags", folder, uids, mode, rng.sample(FLAGS, rng.randint(0, 3)), since))
        elif kind in ("copy", "move"):
            ops.append((kind, folder, uids, rng.choice(FOLDERS)))
        else:
            ops.append(("expunge", folder, rng.choice([None, uids])))
    return ops


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_operations_same_state(tmp_path: Path, seed: int) -> None:
    ops = _ops(random.Random(seed), 150)

    async def main() -> None:
        memory = MemoryMailStore()
        embedded = EmbeddedMailStore(tmp_path)
        try:
            mbox, ebox = memory.mailbox(A), embedded.mailbox(A)
            for op in ops:
                assert await _apply(mbox, op) == await _apply(ebox, op), op
            assert await _state(mbox) == await _state(ebox)
        finally:
            await embedded.close()
            await memory.close()

    asyncio.run(main())
