"""IMAP load: SELECT and ``UID FETCH 1:* (UID FLAGS)`` on a large mailbox, a realistic command
mix from N concurrent clients (commands/s, p50/p99 latency), and memory per idle connection.

The server runs in a child process (the real ``imap`` listener, auth, and the mail store that
``open_mailstore`` picks for the config) on 127.0.0.1; the clients run in this process on
asyncio with a minimal IMAP client that reads literals by length, so that the client is not
what is measured. Mailboxes are filled through the store's durable append before the server
listens (that takes a while for 100,000 messages: every append is fsynced).

    PYTHONPATH=src python bench/bench_imap.py                       # 100,000 / 10,000 messages
    PYTHONPATH=src python bench/bench_imap.py --big 20000 --clients 1 10 --idle 500

Mix per client (weights): NOOP 20, FETCH BODY.PEEK[] of a random message 25, STORE +FLAGS 15,
UID SEARCH UNSEEN 10, UID FETCH 1:* (FLAGS) 5, APPEND 10, IDLE (enter, DONE after 20 ms) 5,
SELECT 10. All clients share one 10,000-message mailbox (several devices on one account).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

PASSWORD = "bench-password-1"
BIG, MIX, IDLE = "big@example.org", "mix@example.org", "idle@example.org"


def make_message(n: int) -> bytes:
    head = (
        f"From: Sender {n % 97} <sender{n % 97}@example.net>\r\nTo: user@example.org\r\n"
        f"Subject: message number {n}\r\nDate: Mon, 2 Mar 2020 10:00:00 +0000\r\n"
        f"Message-ID: <bench-{n}@example.net>\r\n\r\n"
    ).encode()
    return head + b"Hello, this is a benchmark message body line.\r\n" * 40


def serve(base: Path, big: int, mix: int, pipe: Pipe) -> None:
    """Child process: build the server, fill the mailboxes, bind, report the port, serve."""
    from merpati.accounts.store import AccountStore
    from merpati.app import App
    from merpati.auth.credentials import Authenticator
    from merpati.config import Config, LimitsConfig, ListenAddress, ListenConfig, TLSConfig
    from merpati.imap.server import imap_listener
    from merpati.logging import EventLog
    from merpati.mailstore import open_mailstore
    from merpati.mailstore.api import Mailbox
    from merpati.metrics import Metrics
    from merpati.server.listeners import Acceptor
    from merpati.tls import TLSManager

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def fill(box: Mailbox, count: int) -> None:
        batch = 500
        for start in range(0, max(0, count), batch):
            await asyncio.gather(
                *[
                    box.append("INBOX", make_message(i))
                    for i in range(start, min(count, start + batch))
                ]  # type: ignore[attr-defined]
            )

    async def main() -> None:
        off: tuple[ListenAddress, ...] = ()
        config = Config(
            hostname="bench.example.org",
            data_dir=base / "data",
            listen=ListenConfig(
                smtp=off,
                submission=off,
                submissions=off,
                imaps=off,
                pop3=off,
                pop3s=off,
                http=off,
                imap=(ListenAddress("127.0.0.1", 0),),
            ),
            tls=TLSConfig(allow_plaintext_auth=True),
            limits=LimitsConfig(connections=100_000, connections_per_ip=100_000),
        )
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = AccountStore.open(config.data_dir)
        mailstore = open_mailstore(config, store.quota)
        if "example.org" not in store.domains():
            store.add_domain("example.org")
        t0 = time.perf_counter()
        appended = 0
        for address, count in ((BIG, big), (MIX, mix), (IDLE, 10)):
            if store.get_account(address) is None:
                store.add_account(address, PASSWORD)
            await mailstore.create_account(address)
            box = mailstore.mailbox(address)
            have = (await box.folder("INBOX")).messages
            await fill(box, count - have)  # --data reuses what an earlier run stored
            appended += max(0, count - have)
        fill_s = time.perf_counter() - t0
        app = App(
            config=config,
            accounts=store,
            auth=Authenticator(store),
            mailstore=mailstore,
            tls=TLSManager(config),
            metrics=Metrics(),
            log=EventLog(quiet=True),
        )
        acceptor = Acceptor(app)
        await acceptor.bind("imap", imap_listener(app), config.listen.imap)
        port = acceptor.bound["imap"][0][1]
        pipe.send({"port": port, "pid": os.getpid(), "fill_s": fill_s, "appended": appended})
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        app.stopping.set()
        acceptor.stop_accepting()
        await acceptor.drain(2)
        await mailstore.close()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


class Client:
    """Just enough IMAP: tagged commands, responses read line by line with literals by size."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.n = 0

    @classmethod
    async def connect(cls, port: int, user: str) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        c = cls(reader, writer)
        await reader.readline()
        await c.command(f"LOGIN {user} {PASSWORD}")
        return c

    async def read_until(self, tag: bytes) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise RuntimeError("connection closed")
            while line.endswith(b"}\r\n"):
                n = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
                line += await self.reader.readexactly(n) + await self.reader.readline()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return lines
            lines.append(line)

    async def command(self, text: str, literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.writer.write(
                tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n"
            )
        await self.writer.drain()
        return await self.read_until(tag)

    async def bulk(self, text: str) -> int:
        """A command whose answer has no literals, read in large chunks: lines before the
        tagged OK (so that the client's own line parsing is not what is measured)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        buf = bytearray()
        marker = b"\r\n" + tag + b" "
        lines = 0
        while True:
            chunk = await self.reader.read(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
            at = buf.find(marker, max(0, len(buf) - len(chunk) - len(marker)))
            if at >= 0 or buf.startswith(tag + b" "):
                end = buf.find(b"\r\n", at + 2 if at >= 0 else 0)
                while end < 0:
                    buf += await self.reader.read(1 << 16)
                    end = buf.find(b"\r\n", at + 2 if at >= 0 else 0)
                status = bytes(buf[at + 2 if at >= 0 else 0 : end])
                if not status.startswith(tag + b" OK"):
                    raise RuntimeError(status.decode(errors="replace"))
                return lines + buf.count(b"\r\n", 0, at + 2 if at >= 0 else 0)
            keep = buf.rfind(b"\r\n")
            if keep > 0:
                lines += buf.count(b"\r\n", 0, keep + 2)
                del buf[: keep + 2]

    async def idle_briefly(self, pause: float) -> None:
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" IDLE\r\n")
        await self.writer.drain()
        while not (await self.reader.readline()).startswith(b"+"):
            pass
        await asyncio.sleep(pause)
        self.writer.write(b"DONE\r\n")
        await self.writer.drain()
        await self.read_until(tag)

    async def close(self) -> None:
        try:
            await self.command("LOGOUT")
        except RuntimeError:
            pass
        self.writer.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def big_mailbox(port: int, repeats: int) -> tuple[list[float], list[float], int]:
    c = await Client.connect(port, BIG)
    selects, fetches = [], []
    count = 0
    for _ in range(repeats):
        t = time.perf_counter()
        lines = await c.command("SELECT INBOX")
        selects.append(time.perf_counter() - t)
        count = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
        t = time.perf_counter()
        got = await c.bulk("UID FETCH 1:* (UID FLAGS)")
        fetches.append(time.perf_counter() - t)
        assert got == count, (got, count)
    await c.close()
    return selects, fetches, count


MIX_WEIGHTS = {
    "NOOP": 20,
    "FETCH BODY": 25,
    "STORE": 15,
    "SEARCH": 10,
    "FETCH FLAGS": 5,
    "APPEND": 10,
    "IDLE": 5,
    "SELECT": 10,
}


async def mix_client(
    port: int, until: float, lat: dict[str, list[float]], rnd: random.Random
) -> None:
    c = await Client.connect(port, MIX)
    lines = await c.command("SELECT INBOX")
    exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
    names, weights = list(MIX_WEIGHTS), list(MIX_WEIGHTS.values())
    while time.perf_counter() < until:
        op = rnd.choices(names, weights)[0]
        t = time.perf_counter()
        n = rnd.randint(1, exists)
        if op == "NOOP":
            await c.command("NOOP")
        elif op == "FETCH BODY":
            await c.command(f"FETCH {n} (UID FLAGS BODY.PEEK[])")
        elif op == "STORE":
            await c.command(f"STORE {n} {rnd.choice('+-')}FLAGS (\\Seen)")
        elif op == "SEARCH":
            await c.command("UID SEARCH UNSEEN")
        elif op == "FETCH FLAGS":
            await c.command("UID FETCH 1:* (FLAGS)")
        elif op == "APPEND":
            await c.command("APPEND INBOX", make_message(n))
        elif op == "IDLE":
            await c.idle_briefly(0.02)
            lat.setdefault(op, []).append(time.perf_counter() - t - 0.02)
            continue
        else:
            lines = await c.command("SELECT INBOX")
            exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
        lat.setdefault(op, []).append(time.perf_counter() - t)
    await c.close()


async def mix(port: int, clients: int, seconds: float) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {}
    until = time.perf_counter() + seconds
    await asyncio.gather(*[mix_client(port, until, lat, random.Random(i)) for i in range(clients)])
    return lat


async def idle_memory(port: int, pid: int, count: int) -> tuple[int, int]:
    # One login first: the first argon2id check leaves its memory in the process (malloc
    # arenas), which is not a per-connection cost; later logins hit the credential cache.
    warm = await Client.connect(port, IDLE)
    await warm.close()
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    conns: list[Client] = []
    for i in range(0, count, 100):
        conns += await asyncio.gather(
            *[Client.connect(port, IDLE) for _ in range(min(100, count - i))]
        )
    for c in conns:
        await c.command("SELECT INBOX")
        c.writer.write(b"i IDLE\r\n")
    await asyncio.gather(*[c.writer.drain() for c in conns])
    for c in conns:
        await c.reader.readline()
    await asyncio.sleep(1)
    after = rss_kib(pid)
    for c in conns:
        c.writer.close()
    return before, after


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--big", type=int, default=100_000, help="messages in the big mailbox")
    parser.add_argument("--mix-messages", type=int, default=10_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="per mix run")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections to open")
    parser.add_argument("--data", type=Path, help="keep the filled data here and reuse it")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"IMAP benchmark, python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-imap-") as tmp:
        base = args.data or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        ours, theirs = multiprocessing.Pipe()
        proc = multiprocessing.get_context("spawn").Process(
            target=serve, args=(base, args.big, args.mix_messages, theirs), daemon=True
        )
        proc.start()
        if not ours.poll(3600):
            proc.kill()
            raise SystemExit("the server did not start")
        info = ours.recv()
        port, pid = info["port"], info["pid"]
        if info["appended"]:
            print(
                f"  filled {info['appended']:,} messages in {info['fill_s']:.0f} s "
                f"({info['appended'] / info['fill_s']:,.0f} durable appends/s)"
            )
        try:
            selects, fetches, count = asyncio.run(big_mailbox(port, 3))
            print(
                f"  {count:,}-message mailbox: SELECT {min(selects) * 1000:.0f} ms "
                f"(median {statistics.median(selects) * 1000:.0f} ms); "
                f"UID FETCH 1:* (UID FLAGS) {min(fetches) * 1000:.0f} ms "
                f"(median {statistics.median(fetches) * 1000:.0f} ms)"
            )
            for clients in args.clients:
                lat = asyncio.run(mix(port, clients, args.seconds))
                total = sum(len(v) for v in lat.values())
                every = [x for v in lat.values() for x in v]
                print(
                    f"  mix, {clients:>3} clients: {total / args.seconds:,.0f} commands/s, "
                    f"p50 {p(every, 0.5):.1f} ms, p99 {p(every, 0.99):.1f} ms"
                )
                for op in MIX_WEIGHTS:
                    if op in lat:
                        print(
                            f"      {op:<12} n={len(lat[op]):>6}  p50 {p(lat[op], 0.5):7.1f} ms"
                            f"  p99 {p(lat[op], 0.99):7.1f} ms"
                        )
            if args.idle:
                before, after = asyncio.run(idle_memory(port, pid, args.idle))
                per = (after - before) / args.idle
                print(
                    f"  {args.idle:,} idle connections (logged in, INBOX selected, IDLE): "
                    f"RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB, "
                    f"{per:.1f} KiB per connection"
                )
        finally:
            ours.send("stop")
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
