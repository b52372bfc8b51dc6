"""Inbound SPF/DKIM/DMARC/ARC checks against domains served by the test DNS server: each test
sender gets the right Authentication-Results and the right DMARC disposition."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merpati.config import DNSConfig
from merpati.trust import dkim_keys
from merpati.trust.dkim_sign import sign
from merpati.trust.inbound import (
    InboundVerdict,
    authentication_results_fields,
    check_inbound,
    strip_authentication_results,
)

from .dnsserver import DnsServer
from .helpers import publish, write_config

OURS = "mx.ours.test"
CLIENT = "192.0.2.10"


def message(from_addr: str, extra: bytes = b"") -> bytes:
    return (
        extra + f"From: Sender <{from_addr}>\r\n".encode() + b"To: user@ours.test\r\n"
        b"Subject: test\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <t@x>\r\n\r\nbody\r\n"
    )


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    s = dns_server
    s.add_txt("good.test", f"v=spf1 ip4:{CLIENT} -all")
    s.add_txt("_dmarc.good.test", "v=DMARC1; p=reject")
    s.add_txt("spffail.test", "v=spf1 ip4:192.0.2.99 -all")
    s.add_txt("_dmarc.spffail.test", "v=DMARC1; p=reject; rua=mailto:d@spffail.test")
    s.add_txt("soft.test", "v=spf1 ip4:192.0.2.99 ~all")
    s.add_txt("_dmarc.soft.test", "v=DMARC1; p=quarantine")
    s.add_txt("monitor.test", "v=spf1 -all")
    s.add_txt("_dmarc.monitor.test", "v=DMARC1; p=none")
    s.add_txt("_dmarc.org.test", "v=DMARC1; p=reject; sp=quarantine")
    s.add_txt("sub.org.test", "v=spf1 -all")
    s.add_txt("pct.test", "v=spf1 -all")
    s.add_txt("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0")
    s.add_txt("tempdmarc.test", "v=spf1 -all")
    s.servfail("_dmarc.tempdmarc.test")
    s.add_txt("nodmarc.test", "v=spf1 -all")
    s.add_txt("client.good.test", "v=spf1 a -all")
    s.add("client.good.test", "A", CLIENT)
    s.add_txt("other.test", f"v=spf1 ip4:{CLIENT} -all")
    return s


def check(
    cfg: DNSConfig, msg: bytes, mail_from: str, helo: str = "client.good.test", sample: float = 0.5
) -> InboundVerdict:
    return asyncio.run(
        check_inbound(msg, mail_from, helo, CLIENT, OURS, cfg, sample=lambda: sample)
    )


@pytest.mark.parametrize(
    ("domain", "spf", "dmarc", "disposition"),
    [
        ("good.test", "pass", "pass", "none"),
        ("spffail.test", "fail", "fail", "reject"),
        ("soft.test", "softfail", "fail", "quarantine"),
        ("monitor.test", "fail", "fail", "none"),
        ("sub.org.test", "fail", "fail", "quarantine"),
        ("pct.test", "fail", "fail", "quarantine"),
        ("tempdmarc.test", "fail", "temperror", "none"),
        ("nodmarc.test", "fail", "none", "none"),
    ],
)
def test_sender_domains(
    zone: DnsServer, dns_config: DNSConfig, domain: str, spf: str, dmarc: str, disposition: str
) -> None:
    v = check(dns_config, message(f"a@{domain}"), f"a@{domain}")
    assert v.spf.result == spf
    assert v.dmarc.result == dmarc
    assert v.disposition == disposition
    value = v.authentication_results
    assert value.startswith(f"{OURS}; spf={spf} ")
    assert f"smtp.mailfrom=a@{domain}" in value
    assert f"dmarc={dmarc} " in value and f"header.from={domain}" in value
    assert "spf=pass" in value.split("smtp.mailfrom")[1]  # the HELO identity passes
    assert "smtp.helo=client.good.test" in value
    assert "dkim=none" in value and "arc=none" in value
    header = v.header
    assert header.startswith(b"Authentication-Results: mx.ours.test;")
    assert header.endswith(b"\r\n") and all(len(x) <= 998 for x in header.split(b"\r\n"))


def test_pct_sampling_applies_policy_to_the_sampled_share(
    zone: DnsServer, dns_config: DNSConfig
) -> None:
    zone.add_txt("_dmarc.half.test", "v=DMARC1; p=reject; pct=50")
    zone.add_txt("half.test", "v=spf1 -all")
    msg = message("a@half.test")
    assert check(dns_config, msg, "a@half.test", sample=0.2).disposition == "reject"
    assert check(dns_config, msg, "a@half.test", sample=0.7).disposition == "quarantine"


def test_misaligned_spf_pass_does_not_satisfy_dmarc(zone: DnsServer, dns_config: DNSConfig) -> None:
    v = check(dns_config, message("ceo@spffail.test"), "bounce@other.test")
    assert v.spf.result == "pass"
    assert v.dmarc.result == "fail" and v.disposition == "reject"


def test_two_from_domains_take_the_strictest(zone: DnsServer, dns_config: DNSConfig) -> None:
    msg = message("a@good.test").replace(
        b"From: Sender <a@good.test>", b"From: a@good.test, b@spffail.test"
    )
    v = check(dns_config, msg, "a@good.test")
    assert v.disposition == "reject" and v.dmarc.from_domain == "spffail.test"


def test_null_sender_uses_helo(zone: DnsServer, dns_config: DNSConfig) -> None:
    v = check(dns_config, message("mailer-daemon@client.good.test"), "")
    assert v.spf.result == "pass" and v.spf.domain == "client.good.test"
    assert "smtp.mailfrom" not in v.authentication_results
    assert v.dmarc.result == "pass"  # HELO identity aligned with good.test (p=reject)


def test_missing_from_is_permerror(zone: DnsServer, dns_config: DNSConfig) -> None:
    msg = b"To: x@ours.test\r\nSubject: no from\r\n\r\nbody\r\n"
    v = check(dns_config, msg, "a@good.test")
    assert v.dmarc.result == "permerror" and v.disposition == "none"


def test_dns_down_gives_temperror_not_a_crash(dns_server: DnsServer) -> None:
    dead = DNSConfig(nameservers=(("127.0.0.1", 9),), timeout=0.5)  # nothing listens there
    v = check(dead, message("a@good.test"), "a@good.test")
    assert v.spf.result == "temperror"
    assert v.dmarc.result == "temperror"
    assert v.disposition == "none"
    assert "spf=temperror" in v.authentication_results


def test_dkim_aligned_pass_with_the_printed_records(
    tmp_path: Path, zone: DnsServer, dns_config: DNSConfig
) -> None:
    config = write_config(tmp_path)
    dkim_keys.create_keys(tmp_path / "data", "example.test")
    publish(zone, config, "example.test")  # includes v=spf1 mx -all and p=quarantine
    signed = sign(message("alice@example.test"), "example.test", tmp_path / "data")
    v = check(dns_config, signed, "alice@example.test")
    assert v.spf.result == "fail"  # the client is not the MX
    assert [d.result for d in v.dkim] == ["pass", "pass"]
    assert v.dmarc.result == "pass" and v.disposition == "none"
    assert v.authentication_results.count("dkim=pass") == 2
    assert "header.d=example.test header.s=r" in v.authentication_results
    # The same message altered in transit: DKIM fails, DMARC quarantines.
    altered = signed.replace(b"body\r\n", b"changed body\r\n")
    v = check(dns_config, altered, "alice@example.test")
    assert [d.result for d in v.dkim] == ["fail", "fail"]
    assert v.disposition == "quarantine"


def test_forged_results_for_our_id_are_stripped(zone: DnsServer, dns_config: DNSConfig) -> None:
    forged = (
        b"Authentication-Results: mx.ours.test; dkim=pass header.d=good.test\r\n"
        b"Authentication-Results: (comment) MX.OURS.TEST.;\r\n spf=pass\r\n"
        b"Authentication-Results: elsewhere.test; spf=pass smtp.mailfrom=a@good.test\r\n"
    )
    msg = message("a@spffail.test", extra=forged)
    v = check(dns_config, msg, "a@spffail.test")
    out = v.apply(msg, OURS)
    fields = authentication_results_fields(out)
    assert len(fields) == 2
    assert fields[0].startswith("mx.ours.test; spf=fail")
    assert fields[1].startswith("elsewhere.test;")
    assert out.endswith(b"\r\n\r\nbody\r\n")
    assert strip_authentication_results(msg, OURS).count(b"Authentication-Results") == 1


def test_arc_sealed_message_verifies(
    tmp_path: Path, zone: DnsServer, dns_config: DNSConfig
) -> None:
    dkim_keys.create_keys(tmp_path, "forwarder.test")
    rsa = dkim_keys.list_selectors(tmp_path, "forwarder.test")[0]
    zone.add_txt(f"{rsa.selector}._domainkey.forwarder.test", dkim_keys.txt_record(rsa))
    original = message("a@good.test")
    first = check(dns_config, original, "a@good.test")
    stamped = first.header.replace(b"mx.ours.test", b"forwarder.test", 1) + original
    arc = dkim.arc_sign(
        stamped,
        rsa.selector.encode(),
        b"forwarder.test",
        dkim_keys.dkimpy_private_key(rsa),
        b"forwarder.test",
    )
    assert len(arc) == 3
    sealed = b"".join(arc) + stamped
    v = check(dns_config, sealed, "a@good.test")
    assert v.arc.result == "pass" and v.arc.instances == 1
    assert "arc=pass" in v.authentication_results
    broken = sealed.replace(b"Subject: test", b"Subject: changed")
    assert check(dns_config, broken, "a@good.test").arc.result == "fail"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    head=st.lists(
        st.sampled_from(
            [
                b"From: a@good.test",
                b"From: <>",
                b"From: =?utf-8?q?x?= <@>",
                b"DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=x; h=from; bh=; b=",
                b"DKIM-Signature: garbage ;;==",
                b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x; s=y; b=zz",
                b"ARC-Message-Signature: i=1; d=x",
                b"Authentication-Results: (unclosed comment",
                b"\tcontinuation without a field",
                b"no colon here",
                b"Subject: \xff\xfe invalid utf-8",
            ]
        ),
        max_size=8,
    ),
    body=st.binary(max_size=200),
    helo=st.sampled_from(["client.good.test", "", "[192.0.2.1]", "x" * 300, "bad..name"]),
    mail_from=st.sampled_from(["a@good.test", "", "no-at-sign", "@", "a@[192.0.2.1]"]),
)
def test_never_raises_on_garbage(
    zone: DnsServer,
    dns_config: DNSConfig,
    head: list[bytes],
    body: bytes,
    helo: str,
    mail_from: str,
) -> None:
    message = b"\r\n".join(head) + b"\r\n\r\n" + body
    v = check(dns_config, message, mail_from, helo=helo)
    assert v.authentication_results.startswith(OURS + ";")
    assert v.disposition in ("none", "quarantine", "reject")
    assert b"\n" not in v.header.rstrip(b"\r\n").replace(b"\r\n\t", b"")
