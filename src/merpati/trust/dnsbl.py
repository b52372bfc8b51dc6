"""DNS blocklist lookups of a connecting client (``[policy] dnsbl_zones``, off by default).

The client address is reversed (rfc5782:2.1 octets for IPv4, nibbles for IPv6) and asked as
an A record under each zone, all zones at once. An answer in 127.0.0.0/8 means "listed",
except 127.255.255.0/24, which large lists use to say "query refused" or "error"
(e.g. a public resolver being used), and which is therefore not a listing. A zone that does
not answer in time is skipped: blocklists fail open, never turning a DNS problem into
refused mail. Loopback and private clients are never looked up.

Call point: the SMTP transport of the ``smtp`` listener, right after accepting::

    hits = await dnsbl.check(lookup_for(config.dns), peer_ip, config.policy.dnsbl_zones)
    if hits: send dnsbl.reply(peer_ip, hits) (554) and close

This module decides nothing else and keeps no state.
"""

from __future__ import annotations

import asyncio
import ipaddress

from merpati.address import client_ip
from merpati.trust.lookup import DnsTempError, Lookup

__all__ = ["DNSBL_DEADLINE", "check", "query_name", "reply"]

DNSBL_DEADLINE = 5.0  # seconds for all zones together


def query_name(ip: str, zone: str) -> str | None:
    """rfc5782:2.1/2.4 the name to ask, None for an address that is never looked up."""
    addr = client_ip(ip)
    if addr is None:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        labels = str(addr).split(".")
    else:
        labels = list(addr.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone.strip().strip(".")


def _is_listing(answer: str) -> bool:
    try:
        a = ipaddress.ip_address(answer)
    except ValueError:
        return False
    return a in ipaddress.ip_network("127.0.0.0/8") and a not in ipaddress.ip_network(
        "127.255.255.0/24"
    )


async def check(
    lookup: Lookup, ip: str, zones: tuple[str, ...], *, skip_private: bool = True
) -> list[str]:
    """The zones that list ``ip``."""
    if not zones:
        return []
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return []
    if skip_private and (addr.is_loopback or addr.is_private or addr.is_link_local):
        return []

    async def one(zone: str) -> str | None:
        name = query_name(ip, zone)
        if name is None:
            return None
        try:
            answers = await lookup.addresses(name, 4)
        except DnsTempError:
            return None
        return zone if any(_is_listing(a) for a in answers) else None

    tasks = [asyncio.ensure_future(one(z)) for z in zones]
    done, pending = await asyncio.wait(tasks, timeout=DNSBL_DEADLINE)
    for t in pending:
        t.cancel()
    return [z for t in tasks if t in done and (z := t.result()) is not None]


def reply(ip: str, zones: list[str]) -> bytes:
    """rfc5321:3.1 a 554 greeting refusing the session (names the first list only)."""
    return f"554 5.7.1 Service unavailable; client [{ip}] listed by {zones[0]}\r\n".encode()
