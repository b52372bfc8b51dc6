"""SPF (rfc7208) evaluated against records served by the test DNS server."""

from __future__ import annotations

import asyncio

import pytest

from merpati.trust.lookup import DnspythonLookup
from merpati.trust.spf import check_host

from .dnsserver import DnsServer


def run(lookup: DnspythonLookup, ip: str, domain: str, sender: str = "", helo: str = "h.test"):
    return asyncio.run(check_host(lookup, ip, domain, sender or f"u@{domain}", helo))


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    s = dns_server
    s.add_txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
    s.add_txt("soft.test", "v=spf1 ip4:192.0.2.1 ~all")
    s.add_txt("neutral.test", "v=spf1 ?all")
    s.add_txt("mx.test", "v=spf1 mx/30 a:host.mx.test -all")
    s.add("mx.test", "MX", "10 mail.mx.test.")
    s.add("mail.mx.test", "A", "198.51.100.4")
    s.add("host.mx.test", "A", "203.0.113.9")
    s.add("host.mx.test", "AAAA", "2001:db8::9")
    s.add_txt("inc.test", "v=spf1 include:pass.test include:soft.test -all")
    s.add_txt("redir.test", "v=spf1 redirect=pass.test")
    s.add_txt("twice.test", "v=spf1 -all")
    s.add_txt("twice.test", "v=spf1 +all")
    s.add_txt("loop.test", "v=spf1 include:loop.test -all")
    s.add_txt("many.test", "v=spf1 " + " ".join(f"a:h{i}.many.test" for i in range(11)) + " -all")
    s.add_txt("void.test", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all")
    s.add_txt("macro.test", "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all")
    s.add("1.2.0.192.bob.it._spf.macro.test", "A", "127.0.0.2")
    s.add_txt("bad.test", "v=spf1 ip4:192.0.2.300 -all")
    s.add_txt("unknownmech.test", "v=spf1 foo:bar -all")
    s.add_txt("v6.test", "v=spf1 ip6:2001:db8:1::/48 -all")
    s.add_txt("ptr.test", "v=spf1 ptr -all")
    s.add("9.113.0.203.in-addr.arpa", "PTR", "host.ptr.test.")
    s.add("host.ptr.test", "A", "203.0.113.9")
    s.add_txt("incnone.test", "v=spf1 include:nothing.test -all")
    s.add_txt("broken-inc.test", "v=spf1 include:fails.test -all")
    s.servfail("fails.test")
    s.add_txt("other.test", "some unrelated text")
    return s


CASES = [
    ("192.0.2.77", "pass.test", "pass"),
    ("198.51.100.1", "pass.test", "fail"),
    ("192.0.2.1", "soft.test", "pass"),
    ("192.0.2.2", "soft.test", "softfail"),
    ("192.0.2.2", "neutral.test", "neutral"),
    ("198.51.100.6", "mx.test", "pass"),
    ("198.51.100.8", "mx.test", "fail"),
    ("203.0.113.9", "mx.test", "pass"),
    ("2001:db8::9", "mx.test", "pass"),
    ("::ffff:192.0.2.5", "pass.test", "pass"),
    ("192.0.2.9", "inc.test", "pass"),
    ("10.0.0.1", "inc.test", "fail"),
    ("192.0.2.9", "redir.test", "pass"),
    ("10.0.0.1", "redir.test", "fail"),
    ("192.0.2.9", "twice.test", "permerror"),
    ("192.0.2.9", "loop.test", "permerror"),
    ("192.0.2.9", "many.test", "permerror"),
    ("192.0.2.9", "void.test", "permerror"),
    ("192.0.2.1", "macro.test", "pass"),
    ("192.0.2.3", "macro.test", "fail"),
    ("192.0.2.1", "bad.test", "permerror"),
    ("192.0.2.1", "unknownmech.test", "permerror"),
    ("2001:db8:1::5", "v6.test", "pass"),
    ("2001:db8:2::5", "v6.test", "fail"),
    ("203.0.113.9", "ptr.test", "pass"),
    ("203.0.113.10", "ptr.test", "fail"),
    ("192.0.2.1", "incnone.test", "permerror"),
    ("192.0.2.1", "broken-inc.test", "temperror"),
    ("192.0.2.1", "other.test", "none"),
    ("192.0.2.1", "nonexistent.test", "none"),
    ("192.0.2.1", "localhost", "none"),
    ("192.0.2.1", "192.0.2.1", "none"),
    ("192.0.2.1", "[192.0.2.1]", "none"),
]


@pytest.mark.parametrize(("ip", "domain", "expected"), CASES)
def test_spf_results(
    zone: DnsServer, lookup: DnspythonLookup, ip: str, domain: str, expected: str
) -> None:
    sender = "bob.it@macro.test" if domain == "macro.test" else ""
    assert run(lookup, ip, domain, sender).result == expected


def test_spf_dns_timeout_is_temperror(zone: DnsServer, lookup: DnspythonLookup) -> None:
    zone.drop("slow.test")
    outcome = run(lookup, "192.0.2.1", "slow.test")
    assert outcome.result == "temperror"


def test_spf_unreadable_client_ip(zone: DnsServer, lookup: DnspythonLookup) -> None:
    assert run(lookup, "not-an-ip", "pass.test").result == "permerror"
