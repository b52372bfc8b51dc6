"""POP3 RETR throughput: messages/s and MB/s for 1 and 20 concurrent clients.

The server runs in a child process (the real pop3/pop3s listeners, auth, TLS and the mail
store that ``open_mailstore`` picks for the config) on 127.0.0.1; the clients run in this
process on asyncio, log in, pipeline their RETR commands (CAPA PIPELINING) and find the end of
each reply with one buffer scan, so that the client is not what is measured.

    PYTHONPATH=src python bench/bench_pop3.py                 # 1,000 x 10 KB, 1 and 20 clients
    PYTHONPATH=src python bench/bench_pop3.py --tls           # the same over pop3s
    PYTHONPATH=src python bench/bench_pop3.py --messages 200 --clients 1 4

With N clients the 1,000 messages are spread over N accounts (POP3 locks a maildrop per
session), so every run moves the same number of bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

PASSWORD = "bench-password-1"


def make_message(n: int, size: int) -> bytes:
    head = (
        f"From: bench@example.net\r\nTo: user@example.org\r\nSubject: bench {n}\r\n"
        f"Message-ID: <bench-{n}@example.net>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstu\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)] + b"\r\n"
    body = body.replace(b"\r\nThe quick", b"\r\n.The quick", 3)  # a few lines to stuff
    return head + body


def serve(base: Path, accounts: int, per_account: int, size: int, pipe: Pipe) -> None:
    """Child process: build the server, fill the maildrops, bind, report ports, serve."""
    from merpati.accounts.store import AccountStore
    from merpati.app import App
    from merpati.auth.credentials import Authenticator
    from merpati.config import Config, ListenAddress, ListenConfig, TLSConfig
    from merpati.logging import EventLog
    from merpati.mailstore import open_mailstore
    from merpati.metrics import Metrics
    from merpati.pop3.server import pop3_listener, pop3s_listener
    from merpati.server.listeners import Acceptor
    from merpati.tls import TLSManager

    async def main() -> None:
        off: tuple[ListenAddress, ...] = ()
        here = (ListenAddress("127.0.0.1", 0),)
        config = Config(
            hostname="bench.example.org",
            data_dir=base / "data",
            listen=ListenConfig(
                smtp=off,
                submission=off,
                submissions=off,
                imap=off,
                imaps=off,
                http=off,
                pop3=here,
                pop3s=here,
            ),
            tls=TLSConfig(allow_plaintext_auth=True),
        )
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = AccountStore.open(config.data_dir)
        mailstore = open_mailstore(config, store.quota)
        store.add_domain("example.org")
        for a in range(accounts):
            address = f"bench{a}@example.org"
            store.add_account(address, PASSWORD)
            await mailstore.create_account(address)
            box = mailstore.mailbox(address)
            for i in range(per_account):
                await box.append("INBOX", make_message(i, size))
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
        await acceptor.bind("pop3", pop3_listener(app), config.listen.pop3)
        await acceptor.bind("pop3s", pop3s_listener(app), config.listen.pop3s)
        pipe.send({name: addrs[0][1] for name, addrs in acceptor.bound.items()})
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
        acceptor.stop_accepting()
        await mailstore.close()

    asyncio.run(main())  # the stdlib loop, as `merpati serve` uses


async def client(
    port: int, account: str, tls: bool, ready: asyncio.Barrier
) -> tuple[int, int, float]:
    """Log in, wait for the others, RETR every message pipelined, QUIT.
    Returns (messages, octets, time of the last octet)."""
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 22)
    await reader.readline()
    writer.write(f"USER {account}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode())
    await writer.drain()
    for _ in range(2):
        assert (await reader.readline()).startswith(b"+OK")
    stat = await reader.readline()
    count = int(stat.split()[1])
    await ready.wait()  # logins (argon2id) are not what is measured
    writer.write(b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1)))
    await writer.drain()
    buf = bytearray()
    done = octets = pos = 0
    while done < count:
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise RuntimeError("server closed the connection")
        buf += chunk
        while done < count:
            status_end = buf.find(b"\r\n", pos)
            if status_end < 0:
                break
            end = buf.find(b"\r\n.\r\n", status_end - 2 if status_end >= 2 else 0)
            if end < 0:
                break
            if not buf.startswith(b"+OK", pos):
                raise RuntimeError(bytes(buf[pos:status_end]).decode(errors="replace"))
            octets += end + 5 - pos
            pos = end + 5
            done += 1
        if pos > (1 << 20):
            del buf[:pos]
            pos = 0
    finished = time.perf_counter()
    writer.write(b"QUIT\r\n")
    await writer.drain()
    await reader.readline()
    writer.close()
    return done, octets, finished


async def run_clients(port: int, clients: int, tls: bool) -> tuple[int, int, float]:
    """All clients log in, then RETR at once; the time runs from then to the last octet."""
    ready = asyncio.Barrier(clients + 1)
    tasks = [
        asyncio.create_task(client(port, f"bench{c}@example.org", tls, ready))
        for c in range(clients)
    ]
    await ready.wait()
    start = time.perf_counter()
    results = await asyncio.gather(*tasks)
    wall = max(r[2] for r in results) - start
    return sum(r[0] for r in results), sum(r[1] for r in results), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="in total per run")
    parser.add_argument("--size", type=int, default=10 * 1024, help="octets per message")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--tls", action="store_true", help="use pop3s instead of pop3")
    args = parser.parse_args()
    print(
        f"POP3 RETR, {args.messages} messages of {args.size} octets per run, "
        f"{'pop3s (TLS)' if args.tls else 'pop3 (plaintext)'}, python {sys.version.split()[0]}"
    )
    for clients in args.clients:
        per = args.messages // clients
        with tempfile.TemporaryDirectory(prefix="bench-pop3-") as tmp:
            ours, theirs = multiprocessing.Pipe()
            proc = multiprocessing.get_context("spawn").Process(
                target=serve, args=(Path(tmp), clients, per, args.size, theirs), daemon=True
            )
            proc.start()
            if not ours.poll(300):
                proc.kill()
                raise SystemExit("the server did not start")
            ports = ours.recv()
            port = ports["pop3s" if args.tls else "pop3"]
            try:
                n, octets, wall = asyncio.run(run_clients(port, clients, args.tls))
            finally:
                ours.send("stop")
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
        print(
            f"  {clients:>3} client{'s' if clients > 1 else ' '}: {n} messages in {wall:.3f} s"
            f" = {n / wall:,.0f} messages/s, {octets / wall / 1e6:,.1f} MB/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
