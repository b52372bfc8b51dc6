"""The shared DNS resolver: an interface (``Resolver``), the dnspython implementation
(``DnsResolver``) and a fake for unit tests (``FakeResolver``).

Failures are values the caller can act on, never crashes: ``DNSTemporaryError`` (timeout,
SERVFAIL, network) means "try again later", ``DNSNotFound`` (NXDOMAIN) is permanent.
"""

from merpati.dns.fake import FakeResolver
from merpati.dns.resolver import (
    DNSNotFound,
    DnsResolver,
    DNSTemporaryError,
    Resolver,
    make_resolver,
)

__all__ = [
    "DNSNotFound",
    "DNSTemporaryError",
    "DnsResolver",
    "FakeResolver",
    "Resolver",
    "make_resolver",
]
