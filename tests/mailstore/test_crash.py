"""Crash safety: a process appending, flagging, moving and expunging is SIGKILLed at random
points, several rounds over the same data dir. After each kill the store must open without
repair, every append that returned must be there and readable, nothing half-written may be
visible, and no orphaned tmp/ file may remain."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from merpati.mailstore.embedded import EmbeddedMailStore
from merpati.mailstore.embedded.layout import account_dir

A = "alice@example.org"
SRC = str(Path(__file__).resolve().parents[2] / "src")
ROUNDS = 5

CHILD = r"""
import asyncio, hashlib, os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from merpati.mailstore.api import FlagMode
from merpati.mailstore.embedded import EmbeddedMailStore

data_dir, log_path, seed = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
log = open(log_path, "a", buffering=1)

def message(n):
    body = (b"line %d of round %d\r\n" % (n, seed)) * (1 + (n * 7919 + seed) % 3000)
    check = hashlib.sha256(body).hexdigest().encode()
    return b"X-Check: " + check + b"\r\nSubject: m\r\n\r\n" + body, check.decode()

async def main():
    store = EmbeddedMailStore(data_dir)
    box = store.mailbox("alice@example.org")
    n = 0
    while True:
        batch = []
        for _ in range(1 + n % 4):
            data, check = message(n)
            batch.append((box.append("INBOX", data), check))
            n += 1
        results = await asyncio.gather(*(c for c, _ in batch))
        for r, (_, check) in zip(results, batch):
            log.write(f"ok {r.uid} {check}\n")
        uid = results[-1].uid
        if n % 3 == 0:
            await box.store_flags("INBOX", [uid], FlagMode.ADD, ["\\Seen", "$Done"])
        if n % 5 == 0:
            log.write(f"del {batch[0][1]}\n")
            await box.store_flags("INBOX", [results[0].uid], FlagMode.ADD, ["\\Deleted"])
            await box.expunge("INBOX", [results[0].uid])
        if n % 7 == 0 and len(results) > 1:
            await box.move("INBOX", [results[1].uid], "Archive")

asyncio.run(main())
"""


def _verify(data_dir: Path, log_path: Path) -> int:
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    returned = {line.split()[2] for line in lines if line.startswith("ok ")}
    deleted = {line.split()[1] for line in lines if line.startswith("del ")}

    async def check() -> set[str]:
        store = EmbeddedMailStore(data_dir)
        try:
            box = store.mailbox(A)
            present: set[str] = set()
            for folder in ("INBOX", "Archive"):
                msgs = await box.messages(folder)
                uids = [m.uid for m in msgs]
                assert uids == sorted(set(uids))
                for m in msgs:
                    data = await box.read(folder, m.uid)
                    assert len(data) == m.size
                    head, _, body = data.partition(b"\r\n\r\n")
                    check = head.split(b"\r\n")[0].removeprefix(b"X-Check: ").decode()
                    # Nothing half-written: every visible message is complete.
                    assert hashlib.sha256(body).hexdigest() == check
                    present.add(check)
            return present
        finally:
            await store.close()

    present = asyncio.run(check())
    missing = returned - deleted - present
    assert not missing, f"{len(missing)} appended messages lost"
    root = account_dir(data_dir / "mail", A)
    for tmp in [root / "tmp", root / ".Archive" / "tmp"]:
        assert not [n for n in os.listdir(tmp) if not n.startswith("deleted-")], "orphans left"
    return len(returned)


def test_sigkill_during_append_flag_expunge(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "log"
    rng = random.Random(20261123)
    total = 0
    for round_no in range(ROUNDS):
        before = log_path.read_text().count("\n") if log_path.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, SRC, str(data_dir), str(log_path), str(round_no)],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log_path.exists() and log_path.read_text().count("\n") > before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the writer died before it was killed"
        total = _verify(data_dir, log_path)
    assert total > ROUNDS
