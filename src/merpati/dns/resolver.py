"""DNS lookups for Merpati: MX, A/AAAA and TXT through dnspython's async resolver.

``DnsResolver`` honours ``[dns] nameservers`` (host, port pairs; empty means the system
resolver from /etc/resolv.conf) and ``[dns] timeout`` (the whole lifetime of one query), and
keeps a small TTL cache (dnspython's LRU cache, which honours record TTLs and caches negative
answers). A running server has one dnspython resolver per ``[dns]`` config, shared with the
trust checks' ``merpati.trust.lookup`` (``shared_dnspython_resolver``): two error models over
one resolver and one cache. It does not validate DNSSEC and does not follow CNAMEs by hand
(the resolver does).

Error model: NXDOMAIN raises ``DNSNotFound``; "the name exists but has no such record" is an
empty list; everything else (timeout, SERVFAIL, refused, network error, malformed answer)
raises ``DNSTemporaryError``. Nothing else escapes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from merpati.config import Config, DNSConfig

__all__ = ["DNSNotFound", "DNSTemporaryError", "DnsResolver", "Resolver", "make_resolver"]

# Entries kept by the cache; records expire by their own TTL before this bound matters.
CACHE_ENTRIES = 4096


class DNSTemporaryError(Exception):
    """The lookup could not be completed now (timeout, SERVFAIL, network): retry later."""


class DNSNotFound(Exception):
    """The name does not exist (NXDOMAIN): a permanent answer."""


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs, exchange without the trailing dot ("" is the root,
        i.e. a null MX, rfc7505:3). Empty when the domain has no MX records."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """IPv6 then IPv4 addresses of ``host``; empty when it has neither."""
        ...

    async def txt(self, name: str) -> list[str]:
        """TXT records, each with its strings joined (rfc7208:3.3)."""
        ...


def _name(domain: str) -> str:
    return domain.rstrip(".").lower() + "."


def new_dnspython_resolver(
    nameservers: tuple[tuple[str, int], ...], timeout: float
) -> dns.asyncresolver.Resolver:
    """dnspython's async resolver as Merpati sets it up: ``[dns] nameservers`` (else the
    system's /etc/resolv.conf, else a resolver on 127.0.0.1), ``timeout`` for a whole query
    and at most 2 s for one server's answer (so another server is tried in time), and an LRU
    cache that honours TTLs and negative answers."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.exception.DNSException:  # no usable /etc/resolv.conf
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)
    return resolver


_shared: dict[DNSConfig, dns.asyncresolver.Resolver] = {}


def shared_dnspython_resolver(config: DNSConfig) -> dns.asyncresolver.Resolver:
    """The one resolver, and so the one cache, of a ``[dns]`` config: the queue's MX lookups
    (``DnsResolver``) and the trust checks' (``merpati.trust.lookup``) both go through it."""
    found = _shared.get(config)
    if found is None:
        found = _shared[config] = new_dnspython_resolver(config.nameservers, config.timeout)
    return found


class DnsResolver:
    """The production resolver (dnspython, asyncio)."""

    def __init__(
        self,
        nameservers: tuple[tuple[str, int], ...] = (),
        timeout: float = 5.0,
        resolver: dns.asyncresolver.Resolver | None = None,
    ) -> None:
        self._resolver = resolver or new_dnspython_resolver(nameservers, timeout)

    async def _query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            answer = await self._resolver.resolve(_name(name), rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DNSNotFound(f"{name}: no such domain") from None
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.LifetimeTimeout:
            raise DNSTemporaryError(f"{name}/{rdtype}: DNS timeout") from None
        except dns.resolver.NoNameservers:
            raise DNSTemporaryError(f"{name}/{rdtype}: no name server answered") from None
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise DNSTemporaryError(f"{name}/{rdtype}: {type(exc).__name__}") from None
        return list(answer)

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for rr in await self._query(domain, "MX"):
            exchange = rr.exchange.to_text(omit_final_dot=True).lower()  # type: ignore[attr-defined]
            out.append((int(rr.preference), "" if exchange in ("", "@", ".") else exchange))  # type: ignore[attr-defined]
        return out

    async def addresses(self, host: str) -> list[str]:
        results = await asyncio.gather(
            self._query(host, "AAAA"), self._query(host, "A"), return_exceptions=True
        )
        found: list[str] = []
        errors: list[BaseException] = []
        for res in results:
            if isinstance(res, BaseException):
                errors.append(res)
            else:
                found.extend(rr.to_text() for rr in res)
        if found:
            return found
        for err in errors:
            if isinstance(err, DNSTemporaryError):
                raise err
        for err in errors:
            if isinstance(err, DNSNotFound):
                raise err
        for err in errors:
            raise err
        return []

    async def txt(self, name: str) -> list[str]:
        out: list[str] = []
        for rr in await self._query(name, "TXT"):
            out.append(b"".join(rr.strings).decode("utf-8", "replace"))  # type: ignore[attr-defined]
        return out


def make_resolver(config: Config) -> DnsResolver:
    return DnsResolver(resolver=shared_dnspython_resolver(config.dns))
