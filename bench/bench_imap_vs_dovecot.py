"""IMAP side by side: Merpati and Dovecot serving the same Maildir, driven by one load generator.

One set of generated messages is written as a Maildir, imported into Merpati with
``merpati import`` and copied into a private Dovecot (bench/reference_dovecot.py). Both run on
127.0.0.1 without TLS; the client is a small asyncio IMAP client that reads literals by length,
in this process. Measured for each server:

- SELECT and ``UID FETCH 1:* (UID FLAGS)`` on the big mailbox (best of 3, seconds);
- a realistic mix from N concurrent clients for T seconds on one shared mailbox: commands/s,
  p50 and p99 latency. Mix weights: NOOP 15, FETCH BODY.PEEK[] 25, STORE +FLAGS 15,
  UID SEARCH 10, UID FETCH 1:* (FLAGS) 5, APPEND 10, IDLE (DONE after 20 ms) 5, SELECT 15;
- memory per idle authenticated connection (IDLE in INBOX): RSS growth / connections.

    python bench/bench_imap_vs_dovecot.py --big 20000 --mix 10000 --clients 1 10 --idle 1000

Needs root for Dovecot (skipped with a message otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_dovecot import Dovecot, available, fill_maildir, free_port, tree_rss_kib

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-1"
BIG, MIX = "big@example.org", "mix@example.org"
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


def make_message(n: int) -> bytes:
    body = b"Hello, this is line %d of a benchmark message body.\r\n" % n
    return (
        f"From: Sender {n % 97} <sender{n % 97}@example.net>\r\nTo: user@example.org\r\n"
        f"Subject: message number {n}\r\nDate: Mon, 2 Mar 2020 10:00:00 +0000\r\n"
        f"Message-ID: <bench-{n}@example.net>\r\nContent-Type: text/plain\r\n\r\n"
    ).encode() + body * (20 + n % 80)


class Client:
    """A minimal IMAP client: tagged commands, literals read by length."""

    def __init__(self) -> None:
        self.n = 0

    async def connect(self, port: int) -> None:
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        await self.r.readline()

    async def _response(self, tag: bytes) -> bytes:
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("server closed")
            while (m := _LITERAL.search(line)) is not None:
                await self.r.readexactly(int(m.group(1)))
                line = await self.r.readline()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return line

    async def cmd(self, text: str, literal: bytes | None = None) -> bytes:
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.w.write(
                tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n"
            )
        return await self._response(tag)

    async def idle(self, seconds: float) -> None:
        self.n += 1
        tag = b"t%d" % self.n
        self.w.write(tag + b" IDLE\r\n")
        while not (await self.r.readline()).startswith(b"+"):
            pass
        await asyncio.sleep(seconds)
        self.w.write(b"DONE\r\n")
        await self._response(tag)

    async def close(self) -> None:
        self.w.close()


async def login(port: int, user: str, select: str | None = "INBOX") -> Client:
    c = Client()
    await c.connect(port)
    await c.cmd(f'LOGIN "{user}" "{PASSWORD}"')
    if select:
        await c.cmd(f"SELECT {select}")
    return c


async def timings(port: int) -> tuple[float, float]:
    c = await login(port, BIG, None)
    sel, fetch = [], []
    for _ in range(3):
        t = time.perf_counter()
        await c.cmd("SELECT INBOX")
        sel.append(time.perf_counter() - t)
        t = time.perf_counter()
        await c.cmd("UID FETCH 1:* (UID FLAGS)")
        fetch.append(time.perf_counter() - t)
    await c.close()
    return min(sel), min(fetch)


async def mix(port: int, clients: int, seconds: float, messages: int) -> tuple[int, list[float]]:
    ops = (
        ["NOOP"] * 15
        + ["FETCH"] * 25
        + ["STORE"] * 15
        + ["SEARCH"] * 10
        + ["FLAGS"] * 5
        + ["APPEND"] * 10
        + ["IDLE"] * 5
        + ["SELECT"] * 15
    )
    latencies: list[float] = []
    by_op: dict[str, list[float]] = {}
    extra = make_message(7)

    async def one(i: int) -> None:
        rnd = random.Random(i)
        c = await login(port, MIX)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            op = rnd.choice(ops)
            n = rnd.randint(1, messages)
            t = time.perf_counter()
            if op == "NOOP":
                await c.cmd("NOOP")
            elif op == "FETCH":
                await c.cmd(f"FETCH {n} (BODY.PEEK[])")
            elif op == "STORE":
                await c.cmd(f"STORE {n} +FLAGS (\\Flagged)")
            elif op == "SEARCH":
                await c.cmd("UID SEARCH UNSEEN FROM sender1")
            elif op == "FLAGS":
                await c.cmd("UID FETCH 1:* (FLAGS)")
            elif op == "APPEND":
                await c.cmd("APPEND Archive (\\Seen)", extra)
            elif op == "IDLE":
                await c.idle(0.02)
            else:
                await c.cmd("SELECT INBOX")
            latencies.append(time.perf_counter() - t)
            by_op.setdefault(op, []).append(latencies[-1])
        await c.close()

    setup = await login(port, MIX, None)
    try:
        await setup.cmd("CREATE Archive")  # Dovecot has no Archive folder by default
    except RuntimeError:
        pass  # Merpati creates it with the account
    await setup.close()
    await asyncio.gather(*(one(i) for i in range(clients)))
    if os.environ.get("BENCH_BY_OP"):
        for op, lat in sorted(by_op.items()):
            print(
                f"    {op:7} n={len(lat):5} p50 {statistics.median(lat) * 1000:7.2f} ms"
                f"  max {max(lat) * 1000:8.2f} ms"
            )
    return len(latencies), latencies


async def idle_memory(port: int, count: int, rss: Callable[[], int]) -> float:
    """RSS growth (``rss()`` in KiB) per authenticated connection idling in INBOX."""
    before = rss()
    conns: list[Client] = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(*(login(port, MIX) for _ in range(min(100, count - start))))
        for c in batch:
            c.n += 1
            c.w.write(b"i IDLE\r\n")
        conns.extend(batch)
    await asyncio.sleep(1.0)
    after = rss()
    for c in conns:
        await c.close()
    return (after - before) / count


def run_merpati(
    base: Path, maildirs: dict[str, Path], workers: int = 1
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data = base / "data"
    cfg = base / "merpati.toml"
    off = "".join(
        f"{n} = []\n"
        for n in ("smtp", "submission", "submissions", "imaps", "pop3", "pop3s", "http")
    )
    cfg.write_text(
        f'data_dir = "{data}"\nworkers = {workers}\n[listen]\nimap = ["127.0.0.1:{port}"]\n{off}'
        "[tls]\nallow_plaintext_auth = true\n[limits]\nconnections_per_ip = 100000\n"
        "connections = 100000\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cli = [sys.executable, "-m", "merpati", "--config", str(cfg)]
    subprocess.run([*cli, "domain", "add", "example.org"], env=env, check=True, capture_output=True)
    for user, src in maildirs.items():
        subprocess.run(
            [*cli, "user", "add", user, "--password-stdin"],
            input=PASSWORD.encode(),
            env=env,
            check=True,
            capture_output=True,
        )
        t = time.perf_counter()
        subprocess.run([*cli, "import", user, str(src)], env=env, check=True, capture_output=True)
        print(f"  merpati import {user}: {time.perf_counter() - t:.1f} s", flush=True)
    proc = subprocess.Popen([*cli, "serve"], env=env, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc, port


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def report(name: str, port: int, rss: Callable[[], int], args: argparse.Namespace) -> None:
    sel, fetch = asyncio.run(timings(port))
    print(
        f"{name}: SELECT {args.big} msgs {sel * 1000:.1f} ms; "
        f"UID FETCH 1:* (UID FLAGS) {fetch * 1000:.1f} ms",
        flush=True,
    )
    for clients in args.clients:
        n, lat = asyncio.run(mix(port, clients, args.seconds, args.mix))
        lat.sort()
        p50 = statistics.median(lat) * 1000
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else 0.0
        print(
            f"{name}: mix {clients:>3} clients: {n / args.seconds:8.0f} commands/s, "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            flush=True,
        )
    if args.idle:
        try:
            per = asyncio.run(idle_memory(port, args.idle, rss))
            print(f"{name}: {args.idle} idle connections: {per:.1f} KiB each", flush=True)
        except (OSError, RuntimeError) as exc:
            print(f"{name}: idle connections failed: {exc!r}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--big", type=int, default=20_000)
    parser.add_argument("--mix", type=int, default=5_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--only", choices=["merpati", "dovecot"])
    parser.add_argument(
        "--workers", type=int, default=1, help="Merpati's `workers` (processes serving IMAP)"
    )
    args = parser.parse_args()
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        src = base / "src"
        print(f"generating {args.big} + {args.mix} messages", flush=True)
        fill_maildir(src, BIG, [make_message(i) for i in range(args.big)], seen=True)
        fill_maildir(src, MIX, [make_message(i) for i in range(args.mix)])
        dirs = {BIG: src / "mail/example.org/big", MIX: src / "mail/example.org/mix"}
        if args.only != "dovecot":
            (base / "m").mkdir()
            proc, port = run_merpati(base / "m", dirs, args.workers)
            try:
                report("merpati", port, lambda: tree_rss_kib(proc.pid), args)
            finally:
                proc.terminate()
                proc.wait(30)
        if args.only != "merpati":
            reason = available()
            if reason:
                print(f"dovecot: skipped ({reason})")
                return
            dbase = base / "d"
            shutil.copytree(src / "mail", dbase / "mail")
            d = Dovecot(dbase, {BIG: PASSWORD, MIX: PASSWORD})
            d.start()
            try:
                report("dovecot", d.imap_port, d.rss_kib, args)
            finally:
                d.stop()


if __name__ == "__main__":
    main()
