"""Where mail for a domain goes: the relay host, or the domain's MX hosts in order.

``route_domain`` turns a recipient domain into a ``Route``: an ordered tuple of ``Host``s to
try, or a ``RouteError`` (permanent: the domain does not exist or publishes a null MX;
temporary: DNS failed). MX hosts are sorted by preference and shuffled among equal preferences
(rfc5321:5.1); with no MX the domain itself is the implicit MX (rfc5321:5.1). Addresses of each
host are looked up later, by the transport, so every address of every host is tried in turn.

It does not decide whether a domain is local (the runner does) and opens no connections.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from merpati.config import Config, parse_host_port
from merpati.dns.resolver import DNSNotFound, DNSTemporaryError, Resolver

__all__ = ["Host", "Route", "RouteError", "relay_route", "route_domain"]

# The submission port is what providers that block port 25 offer (rfc6409); 465 is implicit
# TLS (rfc8314:3.3).
RELAY_DEFAULT_PORT = 587
IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # host name, or an IP address (address literal, relay given by address)
    port: int
    implicit_mx: bool = False  # the domain itself (no MX): no address means no such domain
    relay: bool = False  # the smarthost: AUTH when configured, TLS required for it
    implicit_tls: bool = False

    @property
    def ip_literal(self) -> str | None:
        try:
            return str(ipaddress.ip_address(self.name))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class RouteError:
    permanent: bool
    status: str  # rfc3463 enhanced status
    text: str


@dataclass(frozen=True, slots=True)
class Route:
    hosts: tuple[Host, ...] = ()
    error: RouteError | None = None


def relay_route(config: Config) -> Route:
    host, port = parse_host_port(config.delivery.relay_host, RELAY_DEFAULT_PORT)
    return Route((Host(host, port, relay=True, implicit_tls=port == IMPLICIT_TLS_PORT),))


async def route_domain(
    domain: str, *, resolver: Resolver, config: Config, rng: random.Random | None = None
) -> Route:
    if config.delivery.relay_host:
        return relay_route(config)
    port = config.delivery.port
    if domain.startswith("[") and domain.endswith("]"):  # rfc5321:4.1.3 address literal
        literal = domain[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            return Route(error=RouteError(True, "5.1.2", f"bad address literal {domain}"))
        return Route((Host(literal, port),))
    try:
        records = await resolver.mx(domain)
    except DNSNotFound:
        return Route(error=RouteError(True, "5.1.2", f"domain {domain} does not exist"))
    except DNSTemporaryError as exc:
        return Route(error=RouteError(False, "4.4.3", f"DNS lookup failed: {exc}"))
    if any(host == "" for _, host in records):
        # rfc7505:3 a null MX says the domain accepts no mail; rfc7505:4.1 bounce at once.
        return Route(error=RouteError(True, "5.1.10", f"{domain} accepts no mail (null MX)"))
    if not records:
        return Route((Host(domain, port, implicit_mx=True),))
    own = [p for p, h in records if h == config.hostname.lower()]
    if own:
        # rfc5321:5.1 we are one of the MX hosts: only more preferred hosts may be used.
        records = [(p, h) for p, h in records if p < min(own)]
        if not records:
            return Route(error=RouteError(True, "5.4.6", f"MX of {domain} points back to us"))
    rng = rng or random.Random()
    prefs = sorted({p for p, _ in records})
    ordered: list[Host] = []
    for pref in prefs:
        same = sorted({h for p, h in records if p == pref})
        rng.shuffle(same)  # rfc5321:5.1 randomise among equal preferences
        ordered.extend(Host(h, port) for h in same if h not in {o.name for o in ordered})
    return Route(tuple(ordered))
