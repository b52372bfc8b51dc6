"""Fixtures for the trust tests: a real authoritative DNS server on 127.0.0.1 and a lookup
that asks only it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from merpati.config import DNSConfig
from merpati.trust.lookup import DnspythonLookup

from .dnsserver import DnsServer


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_config(dns_server: DnsServer) -> DNSConfig:
    return DNSConfig(nameservers=(("127.0.0.1", dns_server.port),), timeout=1.0)


@pytest.fixture
def lookup(dns_config: DNSConfig) -> DnspythonLookup:
    return DnspythonLookup(dns_config)
