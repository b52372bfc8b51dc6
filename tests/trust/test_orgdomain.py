"""Organizational domains (rfc7489:3.2) with the system Public Suffix List and without it."""

from __future__ import annotations

import pytest

from merpati.trust.dmarc import aligned, parse_record
from merpati.trust.orgdomain import organizational_domain, public_suffix_rules

COMMON = [
    ("mail.example.com", "example.com"),
    ("a.b.example.com", "example.com"),
    ("example.com", "example.com"),
    ("www.bbc.co.uk", "bbc.co.uk"),
    ("x.example.com.au", "example.com.au"),
    ("Example.ORG.", "example.org"),
    ("com", "com"),
]


@pytest.mark.parametrize(("name", "org"), COMMON)
def test_heuristic(name: str, org: str) -> None:
    assert organizational_domain(name, use_system_list=False) == org


@pytest.mark.parametrize(("name", "org"), COMMON)
def test_system_list(name: str, org: str) -> None:
    if public_suffix_rules() is None:
        pytest.skip("publicsuffix (Debian package) not installed")
    assert organizational_domain(name) == org


def test_system_list_wildcards_and_exceptions() -> None:
    if public_suffix_rules() is None:
        pytest.skip("publicsuffix (Debian package) not installed")
    assert organizational_domain("a.b.c.kawasaki.jp") == "b.c.kawasaki.jp"  # *.kawasaki.jp
    assert organizational_domain("www.city.kawasaki.jp") == "city.kawasaki.jp"  # !city
    assert organizational_domain("x.someone.github.io") == "someone.github.io"


def test_alignment() -> None:
    assert aligned("mail.example.com", "example.com", "r")
    assert not aligned("mail.example.com", "example.com", "s")
    assert aligned("EXAMPLE.com.", "example.com", "s")
    assert not aligned("example.net", "example.com", "r")
    assert not aligned("evil.co.uk", "bbc.co.uk", "r")


def test_dmarc_record_parsing() -> None:
    r = parse_record(b"v=DMARC1; p=reject; sp=none; pct=20; adkim=s; aspf=s; rua=mailto:x@y")
    assert r is not None and (r.p, r.sp, r.pct, r.adkim, r.aspf) == ("reject", "none", 20, "s", "s")
    assert parse_record(b"v=DMARC1;p=quarantine") is not None
    assert parse_record(b"v=DMARC1; p=bogus") is None
    bogus_with_rua = parse_record(b"v=DMARC1; p=bogus; rua=mailto:a@b")
    assert bogus_with_rua is not None and bogus_with_rua.p == "none"
    assert parse_record(b"p=reject; v=DMARC1") is None  # v must come first
    assert parse_record(b"v=DMARC2; p=reject") is None
    r = parse_record(b"v=DMARC1; p=reject; pct=500")
    assert r is not None and r.pct == 100
    assert parse_record(b"v=DMARC1; p=reject; garbage") is None
    assert parse_record("v=DMARC1; p=réject".encode()) is None
