"""The shared resolver against a real authoritative DNS server on 127.0.0.1 (UDP and TCP),
and its error model: NXDOMAIN is permanent, timeouts and SERVFAIL are temporary."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from qhelpers import run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dnsserver import DNSServer
from merpati.config import Config, DNSConfig
from merpati.dns import DNSNotFound, DnsResolver, DNSTemporaryError, FakeResolver
from merpati.dns.resolver import make_resolver

RECORDS = {
    ("b.test", "MX"): ["10 mx1.b.test.", "20 mx2.b.test."],
    ("mx1.b.test", "A"): ["127.0.0.3"],
    ("mx1.b.test", "AAAA"): ["::1"],
    ("b.test", "TXT"): ['"v=spf1 " "-all"'],
    ("null.test", "MX"): ["0 ."],
    ("a.test", "A"): ["127.0.0.2"],
}


@pytest.fixture(scope="module")
def dns_server() -> DNSServer:
    server = DNSServer(RECORDS).start()
    yield server  # type: ignore[misc]
    server.stop()


def test_lookups(dns_server: DNSServer) -> None:
    r = DnsResolver(((dns_server.host, dns_server.port),), timeout=2.0)

    async def body() -> None:
        assert sorted(await r.mx("b.test")) == [(10, "mx1.b.test"), (20, "mx2.b.test")]
        assert sorted(await r.mx("B.TEST.")) == [(10, "mx1.b.test"), (20, "mx2.b.test")]
        assert await r.addresses("mx1.b.test") == ["::1", "127.0.0.3"]
        assert await r.txt("b.test") == ["v=spf1 -all"]
        assert await r.mx("null.test") == [(0, "")]
        assert await r.mx("a.test") == []  # no MX: NODATA, an implicit MX case
        with pytest.raises(DNSNotFound):
            await r.mx("nothere.b.test")
        with pytest.raises(DNSNotFound):
            await r.addresses("nothere.b.test")

    run(body())


def test_cache_answers_repeated_queries(dns_server: DNSServer) -> None:
    r = DnsResolver(((dns_server.host, dns_server.port),), timeout=2.0)

    async def body() -> None:
        before = len(dns_server.queries)
        for _ in range(5):
            await r.mx("b.test")
        assert len(dns_server.queries) - before == 1

    run(body())


def test_unreachable_nameserver_is_a_temporary_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never answers
        r = DnsResolver((("127.0.0.1", port),), timeout=0.3)

        async def body() -> None:
            with pytest.raises(DNSTemporaryError):
                await r.mx("b.test")
            with pytest.raises(DNSTemporaryError):
                await r.addresses("mx1.b.test")

        run(body())


def test_refused_is_a_temporary_error(dns_server: DNSServer) -> None:
    r = DnsResolver(((dns_server.host, dns_server.port),), timeout=1.0)

    async def body() -> None:
        with pytest.raises(DNSTemporaryError):
            await r.mx("elsewhere.example")

    run(body())


def test_make_resolver_uses_config() -> None:
    cfg = Config(dns=DNSConfig(nameservers=(("127.0.0.1", 5353),), timeout=1.5))
    r = make_resolver(cfg)
    assert isinstance(r, DnsResolver)


def test_fake_resolver() -> None:
    f = FakeResolver(
        mx_records={"b.test": [(10, "MX.b.test.")]},
        a_records={"mx.b.test": ["127.0.0.1"]},
        aaaa_records={"mx.b.test": ["::1"]},
        failing={"broken.test"},
    )

    async def body() -> None:
        assert await f.mx("b.test") == [(10, "mx.b.test")]
        assert await f.addresses("mx.b.test") == ["::1", "127.0.0.1"]
        with pytest.raises(DNSNotFound):
            await f.mx("none.test")
        with pytest.raises(DNSTemporaryError):
            await f.mx("broken.test")
        assert f.lookups["b.test"] == 1

    run(body())
