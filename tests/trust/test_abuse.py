"""Abuse controls as library pieces: DNSBL, greylisting, rate limiters."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from merpati.config import Config, PolicyConfig
from merpati.trust import dnsbl
from merpati.trust.greylist import AUTO_WHITELIST_AFTER, RETRY_WINDOW, Greylist, client_network
from merpati.trust.lookup import DnspythonLookup
from merpati.trust.ratelimit import AbuseControls, RateLimiter

from .dnsserver import DnsServer


def test_dnsbl_query_names() -> None:
    assert dnsbl.query_name("192.0.2.99", "bl.test") == "99.2.0.192.bl.test"
    assert dnsbl.query_name("::ffff:192.0.2.99", "bl.test.") == "99.2.0.192.bl.test"
    v6 = dnsbl.query_name("2001:db8::1", "bl.test")
    assert v6 is not None and v6.startswith("1.0.0.0.") and v6.endswith(".8.b.d.0.1.0.0.2.bl.test")
    assert dnsbl.query_name("nonsense", "bl.test") is None


def test_dnsbl_listing_and_errors(dns_server: DnsServer, lookup: DnspythonLookup) -> None:
    # A public address (documentation ranges count as private and are never asked).
    dns_server.add("4.3.2.1.bl.test", "A", "127.0.0.2")
    dns_server.add("4.3.2.1.other.test", "A", "127.0.0.4")
    dns_server.add("4.3.2.1.refusing.test", "A", "127.255.255.254")  # "query refused"
    dns_server.add("4.3.2.1.weird.test", "A", "10.0.0.1")
    dns_server.servfail("4.3.2.1.broken.test")
    zones = ("bl.test", "refusing.test", "weird.test", "broken.test", "other.test", "clean.test")
    hits = asyncio.run(dnsbl.check(lookup, "1.2.3.4", zones))
    assert hits == ["bl.test", "other.test"]
    assert dnsbl.reply("1.2.3.4", hits).startswith(b"554 5.7.1 ")
    assert asyncio.run(dnsbl.check(lookup, "1.2.3.5", zones)) == []
    assert asyncio.run(dnsbl.check(lookup, "1.2.3.4", ())) == []  # off by default
    assert asyncio.run(dnsbl.check(lookup, "127.0.0.1", zones)) == []  # loopback never asked
    assert Config().policy.dnsbl_zones == ()


def test_greylist_flow(tmp_path: Path) -> None:
    g = Greylist(tmp_path / "grey.sqlite3", delay=300)
    t = 1_000_000.0
    first = g.check("192.0.2.1", "a@remote.test", "u@ours.test", now=t)
    assert not first.accept and first.reason == "new" and first.retry_after == 300
    early = g.check("192.0.2.1", "a@remote.test", "u@ours.test", now=t + 100)
    assert not early.accept and early.reason == "early" and 199 <= early.retry_after <= 201
    # A retry from another address of the same /24, any case: passes.
    ok = g.check("192.0.2.200", "A@Remote.TEST", "u@ours.test", now=t + 301)
    assert ok.accept and ok.reason == "passed"
    assert g.check("192.0.2.1", "a@remote.test", "u@ours.test", now=t + 5000).accept
    # Other triplets from that network are still greylisted...
    assert not g.check("192.0.2.1", "b@remote.test", "u@ours.test", now=t + 5000).accept
    # ... and a retry after the window starts over.
    assert not g.check(
        "192.0.2.1", "b@remote.test", "u@ours.test", now=t + 5000 + RETRY_WINDOW + 1
    ).accept
    # Another process sees the same state.
    other = Greylist(tmp_path / "grey.sqlite3", delay=300)
    assert other.check("192.0.2.7", "a@remote.test", "u@ours.test", now=t + 6000).accept
    g.close()
    other.close()


def test_greylist_auto_whitelists_a_good_client(tmp_path: Path) -> None:
    g = Greylist(tmp_path / "grey.sqlite3", delay=60)
    t = 2_000_000.0
    for i in range(AUTO_WHITELIST_AFTER):
        rcpt = f"u{i}@ours.test"
        assert not g.check("198.51.100.5", "list@big.test", rcpt, now=t).accept
        assert g.check("198.51.100.5", "list@big.test", rcpt, now=t + 61).accept
    d = g.check("198.51.100.9", "new@big.test", "someone@ours.test", now=t + 100)
    assert d.accept and d.reason == "whitelisted-client"
    assert not g.check("203.0.113.5", "new@big.test", "someone@ours.test", now=t + 100).accept
    g.expire(now=t + 100 * 86400)
    rows = sqlite3.connect(tmp_path / "grey.sqlite3").execute("SELECT COUNT(*) FROM triplets")
    assert rows.fetchone()[0] == 0
    g.close()


def test_client_network() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert client_network("::ffff:192.0.2.1") == "192.0.2.0/24"


def test_rate_limiter_window() -> None:
    r = RateLimiter(limit=3, window=60)
    assert [r.allow("1.2.3.4", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert r.allow("5.6.7.8", now=3)  # other keys are independent
    assert r.retry_after("1.2.3.4", now=4) == 56
    assert r.allow("1.2.3.4", now=60.5)  # the first event left the window
    assert not r.allow("1.2.3.4", now=60.6)
    assert RateLimiter(limit=0, window=60).allow("x", now=0)  # 0 turns it off


def test_rate_limiter_memory_is_bounded() -> None:
    r = RateLimiter(limit=2, window=10, max_keys=100)
    for i in range(1000):
        assert r.allow(f"k{i}", now=float(i) / 1000)
    assert len(r._events) <= 100


def test_controls_from_config(tmp_path: Path) -> None:
    cfg = Config(
        data_dir=tmp_path,
        policy=PolicyConfig(
            greylisting=True, connection_rate_per_ip=2, outbound_rate_per_account=1
        ),
    )
    c = AbuseControls.from_config(cfg)
    assert c.greylist is not None
    assert c.connections.allow("ip", now=0) and c.connections.allow("ip", now=1)
    assert not c.connections.allow("ip", now=2)
    assert c.outbound.allow("me@ours.test", now=0) and not c.outbound.allow("me@ours.test", now=5)
    assert AbuseControls.from_config(Config(data_dir=tmp_path)).greylist is None


def test_trusted_networks(tmp_path: Path) -> None:
    c = AbuseControls.from_config(Config(data_dir=tmp_path))
    assert c.is_trusted("127.0.0.1") and c.is_trusted("::1") and c.is_trusted("::ffff:127.0.0.9")
    assert not c.is_trusted("192.0.2.1") and not c.is_trusted(None) and not c.is_trusted("x")
