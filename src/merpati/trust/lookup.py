"""The DNS questions the trust checks ask, behind one small protocol so that tests and the
shared resolver can stand behind it.

``Lookup`` answers TXT, A/AAAA, MX and PTR. An answer that says "no such name" or "no records
of that type" is an empty list; a timeout, SERVFAIL or unreachable server raises
``DnsTempError`` (SPF/DKIM/DMARC turn it into temperror, never a crash).

``DnspythonLookup`` is the implementation over dnspython's async resolver as
``merpati.dns.resolver`` sets it up (``[dns] nameservers`` and ``timeout``, a TTL-honouring
cache); a running server's is the very resolver its queue uses. This module asks nothing by
itself; it does not decide what an answer means.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

from merpati.config import DNSConfig
from merpati.dns.resolver import new_dnspython_resolver, shared_dnspython_resolver

__all__ = ["DnsTempError", "DnspythonLookup", "Lookup", "lookup_for"]


class DnsTempError(Exception):
    """The DNS could not answer now (timeout, SERVFAIL, no server reachable)."""


class Lookup(Protocol):
    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record's character-strings joined (rfc7208:3.3, rfc6376:3.6.2.2)."""
        ...

    async def addresses(self, name: str, version: int) -> list[str]:
        """A (version 4) or AAAA (version 6) records as text."""
        ...

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange without the final dot), in answer order."""
        ...

    async def ptr(self, ip: str) -> list[str]:
        """Names (without the final dot) that ``ip`` maps back to."""
        ...


class DnspythonLookup:
    def __init__(
        self, config: DNSConfig, resolver: dns.asyncresolver.Resolver | None = None
    ) -> None:
        """Over ``resolver``, else a new one of its own (a cache of its own)."""
        self._resolver = resolver or new_dnspython_resolver(config.nameservers, config.timeout)

    async def _ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer | None:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return None  # a name that cannot exist has no records
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.resolver.YXDOMAIN:
            return None
        except dns.exception.Timeout as exc:
            raise DnsTempError(f"timeout asking {name} {rdtype.name}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"no answer for {name} {rdtype.name}") from exc

    async def txt(self, name: str) -> list[bytes]:
        answer = await self._ask(name, dns.rdatatype.TXT)
        if answer is None:
            return []
        return [b"".join(r.strings) for r in answer]

    async def addresses(self, name: str, version: int) -> list[str]:
        rdtype = dns.rdatatype.A if version == 4 else dns.rdatatype.AAAA
        answer = await self._ask(name, rdtype)
        return [] if answer is None else [r.address for r in answer]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        answer = await self._ask(name, dns.rdatatype.MX)
        if answer is None:
            return []
        return [(r.preference, r.exchange.to_text().rstrip(".")) for r in answer]

    async def ptr(self, ip: str) -> list[str]:
        try:
            name = dns.reversename.from_address(str(ipaddress.ip_address(ip))).to_text()
        except ValueError:
            return []
        answer = await self._ask(name, dns.rdatatype.PTR)
        return [] if answer is None else [r.target.to_text().rstrip(".") for r in answer]


_shared: dict[DNSConfig, DnspythonLookup] = {}


def lookup_for(resolver_config: DNSConfig | Lookup) -> Lookup:
    """A ``Lookup`` from ``[dns]`` config (one per distinct config, over the resolver the
    queue uses too, so one cache serves every message and both), or the given lookup."""
    if isinstance(resolver_config, DNSConfig):
        found = _shared.get(resolver_config)
        if found is None:
            resolver = shared_dnspython_resolver(resolver_config)
            found = _shared[resolver_config] = DnspythonLookup(resolver_config, resolver)
        return found
    return resolver_config
