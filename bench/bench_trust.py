"""Trust checks: DKIM signing (RSA 2048 + Ed25519) and the inbound SPF/DKIM/DMARC/ARC verdict,
in messages per second, against an authoritative DNS server on 127.0.0.1 (the test one).

    PYTHONPATH=src python bench/bench_trust.py                  # 300 messages of 10 KB
    PYTHONPATH=src python bench/bench_trust.py --messages 1000 --size 50000

Signing runs in this thread; the inbound verdicts run on one event loop, sequentially and then
20 at a time (DNS answers are cached after the first message, as in a running server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "trust"))
from dnsserver import DnsServer
from merpati.config import DNSConfig
from merpati.trust import dkim_keys
from merpati.trust.dkim_sign import sign
from merpati.trust.inbound import check_inbound
from merpati.trust.lookup import DnspythonLookup


def message(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * (size // len(line) + 1)
    return (
        b"From: Alice <alice@example.test>\r\nTo: bob@example.net\r\nSubject: bench\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b@example.test>\r\n\r\n" + body
    )


async def inbound(lookup: DnspythonLookup, signed: bytes, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            v = await check_inbound(
                signed, "alice@example.test", "mx.example.test", "192.0.2.1", "mx.ours", lookup
            )
            assert v.dmarc.result == "pass", v.authentication_results

    await one()  # warm the cache
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    dns = DnsServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            dkim_keys.create_keys(data, "example.test")
            for k in dkim_keys.list_selectors(data, "example.test"):
                dns.add_txt(f"{k.selector}._domainkey.example.test", dkim_keys.txt_record(k))
            dns.add_txt("example.test", "v=spf1 ip4:192.0.2.0/24 -all")
            dns.add_txt("_dmarc.example.test", "v=DMARC1; p=reject")
            dns.add_txt("mx.example.test", "v=spf1 a -all")
            dns.add("mx.example.test", "A", "192.0.2.1")
            msg = message(args.size)
            start = time.perf_counter()
            for _ in range(args.messages):
                signed = sign(msg, "example.test", data)
            rate = args.messages / (time.perf_counter() - start)
            print(f"DKIM sign (rsa+ed25519), {args.size} B: {rate:,.0f} messages/s")
            lookup = DnspythonLookup(DNSConfig(nameservers=(("127.0.0.1", dns.port),)))
            for conc in (1, 20):
                rate = asyncio.run(inbound(lookup, signed, args.messages, conc))
                print(f"inbound verdict, {args.size} B, {conc} at a time: {rate:,.0f} messages/s")
    finally:
        dns.stop()


if __name__ == "__main__":
    main()
