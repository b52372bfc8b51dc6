"""SRS rewriting and reversal, and ARC sealing of forwarded mail."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from pathlib import Path

import pytest

from merpati.config import Config, DNSConfig, PolicyConfig
from merpati.trust import dkim_keys
from merpati.trust.arc_seal import seal
from merpati.trust.inbound import check_inbound
from merpati.trust.srs import Srs, SrsError, is_srs, load_secret, rewrite_needed

from .dnsserver import DnsServer

NOW = 1_795_400_000.0
DAY = 86400.0


def test_srs0_round_trip_and_case_insensitive_hash() -> None:
    srs = Srs(b"k1")
    out = srs.forward("Alice.B@Example.NET", "fwd.test", now=NOW)
    local, _, domain = out.rpartition("@")
    assert domain == "fwd.test" and local.startswith("SRS0=") and is_srs(local)
    assert local.endswith("=Example.NET=Alice.B")
    assert srs.reverse(out, now=NOW + 3 * DAY) == "Alice.B@Example.NET"
    assert srs.reverse(out.upper(), now=NOW) == "ALICE.B@EXAMPLE.NET"
    assert srs.reverse(out.lower(), now=NOW) == "alice.b@example.net"


def test_srs_refuses_forged_expired_and_foreign() -> None:
    srs = Srs(b"k1")
    out = srs.forward("a@example.net", "fwd.test", now=NOW)
    with pytest.raises(SrsError):
        Srs(b"other").reverse(out, now=NOW)
    forged = out.replace("=example.net=", "=victim.test=")
    with pytest.raises(SrsError):
        srs.reverse(forged, now=NOW)
    with pytest.raises(SrsError):
        srs.reverse(out, now=NOW + 22 * DAY)
    assert srs.reverse(out, now=NOW + 21 * DAY) == "a@example.net"
    for bad in ("plain@fwd.test", "SRS0=x@fwd.test", "SRS0=abcd=!!=d=l@fwd.test"):
        with pytest.raises(SrsError):
            srs.reverse(bad, now=NOW)
    with pytest.raises(SrsError):
        srs.forward("no-at-sign", "fwd.test")


def test_srs1_for_a_second_forwarder() -> None:
    first = Srs(b"first-hop").forward("a@example.net", "hop1.test", now=NOW)
    second = Srs(b"k2").forward(first, "hop2.test", now=NOW)
    assert second.startswith("SRS1=") and "=hop1.test==" in second
    assert second.endswith("@hop2.test")
    # A third hop keeps the first hop and its opaque part.
    third = Srs(b"k3").forward(second, "hop3.test", now=NOW)
    assert third.startswith("SRS1=") and "=hop1.test==" in third
    back = Srs(b"k2").reverse(second, now=NOW)
    assert back == first  # to the first forwarder, which reverses its own part
    assert Srs(b"first-hop").reverse(back, now=NOW) == "a@example.net"
    with pytest.raises(SrsError):
        Srs(b"k2").reverse(third, now=NOW)


def test_rewrite_needed() -> None:
    assert rewrite_needed("a@remote.test", sender_is_local=False)
    assert not rewrite_needed("", sender_is_local=False)
    assert not rewrite_needed("me@ours.test", sender_is_local=True)


def test_secret_generated_once_with_mode_0600(tmp_path: Path) -> None:
    cfg = Config(data_dir=tmp_path)
    s1 = load_secret(cfg)
    s2 = load_secret(cfg)
    assert s1 == s2 and len(s1) == 64
    assert stat.S_IMODE((tmp_path / "srs_secret").stat().st_mode) == 0o600
    configured = dataclasses.replace(cfg, policy=PolicyConfig(srs_secret="from-config"))
    assert load_secret(configured) == b"from-config"


def test_arc_seal_of_forwarded_message(
    tmp_path: Path, dns_server: DnsServer, dns_config: DNSConfig
) -> None:
    dkim_keys.create_keys(tmp_path, "fwd.test")
    for key in dkim_keys.list_selectors(tmp_path, "fwd.test"):
        dns_server.add_txt(f"{key.selector}._domainkey.fwd.test", dkim_keys.txt_record(key))
    dns_server.add_txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    msg = (
        b"From: a@sender.test\r\nTo: alias@fwd.test\r\nSubject: s\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    # No results of ours on it yet: nothing to attest, unchanged.
    assert seal(msg, "fwd.test", tmp_path, "mx.fwd.test") is msg
    verdict = asyncio.run(
        check_inbound(msg, "a@sender.test", "h.sender.test", "192.0.2.1", "mx.fwd.test", dns_config)
    )
    received = verdict.apply(msg, "mx.fwd.test")
    sealed = seal(received, "fwd.test", tmp_path, "mx.fwd.test")
    assert sealed.startswith(b"ARC-Seal: i=1;") or b"ARC-Seal: i=1;" in sealed[:2000]
    assert sealed.endswith(received)
    # The next hop (another authserv-id) sees a valid chain.
    nxt = asyncio.run(
        check_inbound(
            sealed, "SRS0=x@fwd.test", "mx.fwd.test", "192.0.2.7", "mx.next.test", dns_config
        )
    )
    assert nxt.arc.result == "pass"
    aar = sealed.split(b"ARC-Authentication-Results:")[1].split(b"ARC-")[0]
    assert b"i=1; mx.fwd.test" in aar and b"spf=pass" in aar
