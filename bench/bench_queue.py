"""Outbound queue throughput: messages/s from the durable queue to a local SMTP sink, with 1
and 10 destination domains.

The sink runs in a child process on 127.0.0.1 (asyncio, PIPELINING, accepts everything and
counts), so that it does not share this process's CPU. This process fills a fresh queue
(each enqueue fsyncs the message file, its directory and the SQLite commit, as in
production), then starts the real ``QueueRunner`` (routing through a fake in-memory resolver
that maps every domain's MX to 127.0.0.1, real SMTP client, connection reuse, default
concurrency limits) and times how long the queue takes to drain.

    PYTHONPATH=src python bench/bench_queue.py                    # 2,000 x 4 KB, 1 and 10 domains
    PYTHONPATH=src python bench/bench_queue.py --messages 500 --domains 1 4 20
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from merpati.config import Config, DeliveryConfig
from merpati.delivery.api import Envelope, Recipient
from merpati.dns.fake import FakeResolver
from merpati.queue.runner import QueueRunner, RunnerDeps
from merpati.queue.store import QueueStore


def make_message(n: int, size: int) -> bytes:
    head = (
        f"From: bench@a.test\r\nTo: user@example.org\r\nSubject: bench {n}\r\n"
        f"Message-ID: <bench-{n}@a.test>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstu\r\n"
    return head + (line * (size // len(line) + 1))[: max(0, size - len(head))]


# -- the sink (child process) ---------------------------------------------------------------
async def _sink_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    in_data = False
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(b"250 2.0.0 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            if not reader._buffer:  # type: ignore[attr-defined]  # flush when caught up
                await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


def _sink_main(pipe: Pipe) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_sink_session, "127.0.0.1", 0)
        pipe.send(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)  # until the parent says stop
        server.close()

    asyncio.run(main())


# -- the measurement ------------------------------------------------------------------------
async def one_run(port: int, messages: int, domains: int, size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        names = [f"d{i}.test" for i in range(domains)]
        resolver = FakeResolver(
            mx_records={d: [(10, "mx." + d)] for d in names},
            a_records={"mx." + d: ["127.0.0.1"] for d in names},
        )
        config = Config(
            hostname="mx.a.test", data_dir=Path(tmp), delivery=DeliveryConfig(port=port)
        )
        store = QueueStore.open(Path(tmp))
        body = make_message(0, size)
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                store.enqueue(
                    Envelope("bench@a.test", ()), body, (Recipient(f"u{n}@{names[n % domains]}"),)
                )
                for n in range(messages)
            )
        )
        enqueue_s = time.perf_counter() - t0
        errors: list[str] = []

        def log(name: str, **fields: object) -> None:
            if name == "queue.attempt" and fields.get("result") != "delivered":
                errors.append(str(fields.get("reply")))

        deps = RunnerDeps(
            config=config,
            resolver=resolver,
            is_local=lambda d: False,
            deliver=lambda: None,
            log=log,
            tls_context=None,
            poll_interval=0.05,
        )
        runner = QueueRunner(store, deps)
        t1 = time.perf_counter()
        runner.start()
        deadline = time.monotonic() + 600
        while store.count() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        deliver_s = time.perf_counter() - t1
        await runner.stop(5)
        store.close()
        if errors:
            raise SystemExit(f"{len(errors)} attempts failed, e.g. {errors[0]}")
        return messages / enqueue_s, messages / deliver_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096, help="bytes per message")
    ap.add_argument("--domains", type=int, nargs="+", default=[1, 10])
    args = ap.parse_args()
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_sink_main, args=(theirs,), daemon=True)
    child.start()
    port = ours.recv()
    try:
        print(f"{args.messages} messages of {args.size} bytes, sink on 127.0.0.1:{port}")
        for d in args.domains:
            enq, dlv = asyncio.run(one_run(port, args.messages, d, args.size))
            print(f"domains={d:<3} enqueue {enq:8.0f} msg/s (fsynced)   delivery {dlv:8.0f} msg/s")
    finally:
        ours.send("stop")
        child.join(5)


if __name__ == "__main__":
    main()
