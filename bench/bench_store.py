"""Mail store benchmark (not a test): durable appends per second with and without group
commit, reads per second of whole messages and of cached structures, and the cost of listing
a large folder.

    python bench/bench_store.py [--dir DIR] [--seconds 1.5] [--big 20000]

Every append is durable when it returns (fsynced content and directory, committed index), as
in the server. Runs in about two minutes by default; the data lives in a temporary directory
under --dir (default: the system temp dir; use a directory on the disk you care about).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from merpati.mailstore.embedded import EmbeddedMailStore

SIZES = (("1 KB", 1_000), ("100 KB", 100_000), ("10 MB", 10_000_000))
WRITERS = (1, 10, 100)


def make_message(size: int, n: int) -> bytes:
    head = (
        b"From: Bench <bench@example.org>\r\nTo: someone@example.net\r\n"
        b"Subject: benchmark message %d\r\nMessage-ID: <%d@bench>\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" % (n, n)
    )
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def appends(base: Path, size: int, writers: int, seconds: float, group: bool) -> float:
    data_dir = Path(tempfile.mkdtemp(dir=base))
    store = EmbeddedMailStore(data_dir, group_commit=group)
    box = store.mailbox("bench@example.org")
    await box.folders()
    message = make_message(size, 0)
    done = 0
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        nonlocal done
        first = True
        while first or time.perf_counter() < deadline:
            first = False
            await box.append("INBOX", message)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - start
    await store.close()
    shutil.rmtree(data_dir)
    return done / elapsed


async def reads(base: Path, seconds: float) -> tuple[float, float, float]:
    data_dir = Path(tempfile.mkdtemp(dir=base))
    store = EmbeddedMailStore(data_dir)
    box = store.mailbox("bench@example.org")
    items = [(make_message(10_000, n), (), None) for n in range(500)]
    await box.append_many("INBOX", items)  # type: ignore[arg-type]
    uids = [m.uid for m in await box.messages("INBOX")]

    async def loop(fn: str, concurrency: int = 10) -> float:
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < deadline:
                await getattr(box, fn)("INBOX", uids[i % len(uids)])
                i += concurrency
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done / (time.perf_counter() - start)

    whole = await loop("read")
    structure = await loop("structure")
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        await box.messages("INBOX")
        n += 1
    listing = n / (time.perf_counter() - start)
    await store.close()
    shutil.rmtree(data_dir)
    return whole, structure, listing


async def big_folder(base: Path, count: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(dir=base))
    store = EmbeddedMailStore(data_dir)
    box = store.mailbox("big@example.org")
    message = make_message(2_000, 0)
    start = time.perf_counter()
    for i in range(0, count, 2000):
        chunk = [
            (message, ("\\Seen",) if j % 3 else (), None) for j in range(i, min(count, i + 2000))
        ]
        await box.append_many("INBOX", chunk)  # type: ignore[arg-type]
    fill = time.perf_counter() - start
    await store.close()
    store = EmbeddedMailStore(data_dir)
    box = store.mailbox("big@example.org")
    out: dict[str, float] = {"fill msgs/s": count / fill}
    t = time.perf_counter()
    await box.folder("INBOX")
    out["folder() cold s"] = time.perf_counter() - t
    t = time.perf_counter()
    await box.messages("INBOX")
    out["messages() cold s"] = time.perf_counter() - t
    t = time.perf_counter()
    await box.folder("INBOX")
    await box.messages("INBOX")
    out["folder()+messages() warm s"] = time.perf_counter() - t
    await box.append("INBOX", message)
    t = time.perf_counter()
    await box.folder("INBOX")
    await box.messages("INBOX")
    out["folder()+messages() after an append s"] = time.perf_counter() - t
    await store.close()
    shutil.rmtree(data_dir)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where to put the temporary data")
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--big", type=int, default=20_000, help="messages in the large folder")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="merpati-bench-", dir=args.dir))
    try:
        print(f"# merpati mail store benchmark ({os.cpu_count()} CPUs, data in {base})")
        print("\n## Durable appends per second\n")
        print("| size | writers | group commit | no group commit | gain |")
        print("|---|---:|---:|---:|---:|")
        for label, size in SIZES:
            for writers in WRITERS:
                seconds = args.seconds if size < 10_000_000 else args.seconds / 2
                with_gc = asyncio.run(appends(base, size, writers, seconds, True))
                without = asyncio.run(appends(base, size, writers, seconds, False))
                print(
                    f"| {label} | {writers} | {with_gc:,.0f} | {without:,.0f} |"
                    f" {with_gc / without:.1f}x |",
                    flush=True,
                )
        whole, structure, listing = asyncio.run(reads(base, args.seconds))
        print("\n## Reads per second (10 KB messages, 10 concurrent readers)\n")
        print(f"- whole message: {whole:,.0f}/s")
        print(f"- cached structure (no parse): {structure:,.0f}/s")
        print(f"- messages() of a 500-message folder: {listing:,.0f}/s")
        print(f"\n## A folder of {args.big:,} messages\n")
        for key, value in asyncio.run(big_folder(base, args.big)).items():
            print(f"- {key}: {value:,.3f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
