"""SPF, rfc7208: ``check_host()`` evaluated asynchronously over the shared ``Lookup``.

Why our own evaluator rather than pyspf: pyspf asks DNS itself, synchronously, through
dnspython's global resolver; it would need a thread per message, would bypass ``[dns]
nameservers`` unless its module-global lookup function were patched, and would not share the
resolver's cache and timeouts. rfc7208's check_host() is small enough to write here in full:
every mechanism and modifier, macros (rfc7208:7), and the processing limits of rfc7208:4.6.4.

Not done: the "exp=" explanation (only shown to a sender we refuse; we use a fixed text), and
the "p" macro, which expands to "unknown" as rfc7208:7.3 permits.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from merpati.address import client_ip
from merpati.trust.lookup import DnsTempError, Lookup

__all__ = [
    "MAX_DNS_TERMS",
    "MAX_VOID_LOOKUPS",
    "SpfOutcome",
    "SpfResult",
    "check_host",
]

SpfResult = Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]

MAX_DNS_TERMS = 10  # rfc7208:4.6.4 include, a, mx, ptr, exists, redirect
MAX_VOID_LOOKUPS = 2  # rfc7208:4.6.4 lookups answering no records
MAX_MX_NAMES = 10  # rfc7208:4.6.4 per mx mechanism
MAX_PTR_NAMES = 10  # rfc7208:5.5
MAX_DOMAIN = 253  # rfc7208:7.3 leftmost labels dropped beyond this

_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)")
_DIRECTIVE = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9_.\-]*)(.*)")
_CIDR_TAIL = re.compile(r"(?:/(\d{1,3}))?(?://(\d{1,3}))?$")
_MACRO = re.compile(r"([A-Za-z])(\d*)([rR]?)([.\-+,/_=]*)")


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    result: SpfResult
    domain: str  # the domain whose policy was evaluated
    reason: str = ""  # a short comment for Authentication-Results


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass(slots=True)
class _Context:
    lookup: Lookup
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    dns_terms: int = 0
    void: int = 0
    seen: list[str] = field(default_factory=list)

    def count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > MAX_DNS_TERMS:
            raise _PermError("too many DNS lookups")

    def count_void(self, empty: bool) -> None:
        if empty:
            self.void += 1
            if self.void > MAX_VOID_LOOKUPS:
                raise _PermError("too many void lookups")


def _valid_domain(domain: str) -> bool:
    """rfc7208:4.3 a domain we can evaluate: labels of 1..63, at least two, no IP literal."""
    if not domain or len(domain) > MAX_DOMAIN or domain.startswith("["):
        return False
    labels = domain.rstrip(".").split(".")
    if labels[-1].isdigit():
        return False  # an IPv4 address (e.g. a HELO address literal), not a domain
    return len(labels) >= 2 and all(0 < len(x) <= 63 for x in labels)


def _client_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = client_ip(text.strip().strip("[]").removeprefix("IPv6:"))
    if ip is None:
        raise ValueError(f"not an IP address: {text!r}")
    return ip


async def check_host(
    lookup: Lookup, client_ip: str, domain: str, sender: str, helo: str
) -> SpfOutcome:
    """rfc7208:4 evaluate ``domain``'s policy for mail from ``sender`` sent by ``client_ip``.

    ``sender`` is the MAIL FROM address; for the HELO identity pass ``postmaster@HELO``.
    """
    try:
        ip = _client_ip(client_ip)
    except ValueError:
        return SpfOutcome("permerror", domain, "client address unreadable")
    domain = domain.strip().rstrip(".").lower()
    if not _valid_domain(domain):
        return SpfOutcome("none", domain, "no valid domain")
    local, at, _ = sender.rpartition("@")
    if not at or not local:
        sender = f"postmaster@{domain}"
    ctx = _Context(lookup, ip, sender, helo)
    try:
        result, reason = await _check(ctx, domain)
    except _PermError as exc:
        return SpfOutcome("permerror", domain, str(exc))
    except _TempError as exc:
        return SpfOutcome("temperror", domain, str(exc))
    return SpfOutcome(result, domain, reason)


async def _record(ctx: _Context, domain: str) -> str | None:
    """rfc7208:4.5 the one "v=spf1" TXT record of ``domain``, None when there is none."""
    try:
        answers = await ctx.lookup.txt(domain)
    except DnsTempError as exc:
        raise _TempError(f"DNS error for {domain}") from exc
    records = [
        a.decode("ascii", "replace")
        for a in answers
        if a.lower() == b"v=spf1" or a.lower().startswith(b"v=spf1 ")
    ]
    if len(records) > 1:
        raise _PermError(f"{domain} has more than one SPF record")
    return records[0] if records else None


async def _check(ctx: _Context, domain: str) -> tuple[SpfResult, str]:
    if len(ctx.seen) > MAX_DNS_TERMS + 1:
        raise _PermError("include or redirect loop")
    ctx.seen.append(domain)
    record = await _record(ctx, domain)
    if record is None:
        return "none", f"no SPF record for {domain}"
    terms = record.split()[1:]
    redirect: str | None = None
    directives: list[tuple[str, str, str]] = []
    for term in terms:
        mod = _MODIFIER.fullmatch(term)
        if mod:
            name = mod.group(1).lower()
            if name == "redirect":
                if redirect is not None:
                    raise _PermError("redirect given twice")  # rfc7208:6
                redirect = mod.group(2)
            elif name == "exp" and any(t.lower().startswith("exp=") for t in terms if t != term):
                raise _PermError("exp given twice")
            _expand(ctx, mod.group(2), domain, check_only=True)
            continue
        d = _DIRECTIVE.fullmatch(term)
        if d is None:
            raise _PermError(f"unreadable term {term!r}")
        directives.append((d.group(1) or "+", d.group(2).lower(), d.group(3)))
    for qualifier, name, rest in directives:
        if await _matches(ctx, domain, name, rest):
            return _QUALIFIERS[qualifier], f"{name}{rest} matched"
    if redirect is not None:
        # rfc7208:6.1 redirect applies only when no mechanism matched.
        ctx.count_term()
        target = _expand(ctx, redirect, domain)
        if not _valid_domain(target):
            raise _PermError("redirect to an invalid domain")
        result, reason = await _check(ctx, target)
        if result == "none":
            raise _PermError(f"redirect to {target} which has no SPF record")
        return result, reason
    return "neutral", "no mechanism matched"


def _target(ctx: _Context, domain: str, rest: str, required: bool) -> str:
    if not rest:
        if required:
            raise _PermError("mechanism needs a domain")
        return domain
    if not rest.startswith(":") or len(rest) == 1:
        raise _PermError(f"unreadable mechanism argument {rest!r}")
    return _expand(ctx, rest[1:], domain)


def _split_cidr(rest: str) -> tuple[str, int, int]:
    m = _CIDR_TAIL.search(rest)
    assert m is not None  # the pattern matches the empty tail
    v4 = int(m.group(1)) if m.group(1) else 32
    v6 = int(m.group(2)) if m.group(2) else 128
    if v4 > 32 or v6 > 128:
        raise _PermError("CIDR length out of range")
    return rest[: m.start()], v4, v6


def _in_network(ctx: _Context, addresses: list[str], v4: int, v6: int) -> bool:
    prefix = v4 if ctx.ip.version == 4 else v6
    for text in addresses:
        try:
            net = ipaddress.ip_network(f"{text}/{prefix}", strict=False)
        except ValueError:
            continue
        if net.version == ctx.ip.version and ctx.ip in net:
            return True
    return False


async def _addresses(ctx: _Context, name: str) -> list[str]:
    try:
        return await ctx.lookup.addresses(name, ctx.ip.version)
    except DnsTempError as exc:
        raise _TempError(f"DNS error for {name}") from exc


async def _matches(ctx: _Context, domain: str, name: str, rest: str) -> bool:
    if name == "all":
        if rest:
            raise _PermError("all takes no argument")
        return True
    if name == "include":
        ctx.count_term()
        target = _target(ctx, domain, rest, required=True)
        result, _ = await _check(ctx, target)
        if result == "pass":
            return True
        if result in ("fail", "softfail", "neutral"):
            return False
        if result == "temperror":
            raise _TempError(f"DNS error in include:{target}")
        raise _PermError(f"include:{target} gave {result}")  # rfc7208:5.2 none -> permerror
    if name in ("a", "mx"):
        ctx.count_term()
        spec, v4, v6 = _split_cidr(rest)
        target = _target(ctx, domain, spec, required=False)
        if name == "a":
            found = await _addresses(ctx, target)
            ctx.count_void(not found)
            return _in_network(ctx, found, v4, v6)
        try:
            exchanges = await ctx.lookup.mx(target)
        except DnsTempError as exc:
            raise _TempError(f"DNS error for MX {target}") from exc
        ctx.count_void(not exchanges)
        if len(exchanges) > MAX_MX_NAMES:
            raise _PermError(f"{target} has more than {MAX_MX_NAMES} MX records")
        for _, host in exchanges:
            if _in_network(ctx, await _addresses(ctx, host), v4, v6):
                return True
        return False
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise _PermError(f"{name} needs a network")
        try:
            net = ipaddress.ip_network(rest[1:], strict=False)
        except ValueError:
            raise _PermError(f"unreadable network {rest[1:]!r}") from None
        if net.version != (4 if name == "ip4" else 6):
            raise _PermError(f"{name} with a network of the other family")
        return net.version == ctx.ip.version and ctx.ip in net
    if name == "exists":
        ctx.count_term()
        target = _target(ctx, domain, rest, required=True)
        try:
            found = await ctx.lookup.addresses(target, 4)  # rfc7208:5.7 always an A query
        except DnsTempError as exc:
            raise _TempError(f"DNS error for {target}") from exc
        ctx.count_void(not found)
        return bool(found)
    if name == "ptr":
        ctx.count_term()
        target = _target(ctx, domain, rest, required=False).lower()
        return await _ptr_matches(ctx, target)
    raise _PermError(f"unknown mechanism {name!r}")


async def _ptr_matches(ctx: _Context, target: str) -> bool:
    """rfc7208:5.5 validated reverse names; DNS errors here only mean "no match"."""
    try:
        names = await ctx.lookup.ptr(str(ctx.ip))
    except DnsTempError:
        return False
    for host in names[:MAX_PTR_NAMES]:
        host = host.lower()
        if host != target and not host.endswith("." + target):
            continue
        try:
            if str(ctx.ip) in await ctx.lookup.addresses(host, ctx.ip.version):
                return True
        except DnsTempError:
            continue
    return False


def _macro_value(ctx: _Context, letter: str, domain: str) -> str:
    local, _, sender_domain = ctx.sender.rpartition("@")
    if letter == "s":
        return ctx.sender
    if letter == "l":
        return local
    if letter == "o":
        return sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if ctx.ip.version == 4:
            return str(ctx.ip)
        return ".".join(ctx.ip.exploded.replace(":", ""))  # rfc7208:7.3 nibbles
    if letter == "p":
        return "unknown"
    if letter == "v":
        return "in-addr" if ctx.ip.version == 4 else "ip6"
    if letter == "h":
        return ctx.helo
    raise _PermError(f"macro letter {letter!r} is not allowed here")  # c, r, t: exp only


def _expand(ctx: _Context, spec: str, domain: str, *, check_only: bool = False) -> str:
    """rfc7208:7 macro expansion of a domain-spec."""
    out: list[str] = []
    i = 0
    while i < len(spec):
        c = spec[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        nxt = spec[i + 1 : i + 2]
        if nxt == "%":
            out.append("%")
        elif nxt == "_":
            out.append(" ")
        elif nxt == "-":
            out.append("%20")
        elif nxt == "{":
            end = spec.find("}", i)
            m = _MACRO.fullmatch(spec[i + 2 : end]) if end > 0 else None
            if m is None:
                raise _PermError("unreadable macro")
            if check_only:
                i = end + 1
                continue
            value = _macro_value(ctx, m.group(1).lower(), domain)
            parts = re.split("[" + re.escape(m.group(4) or ".") + "]", value)
            if m.group(3):
                parts.reverse()
            if m.group(2):
                keep = int(m.group(2))
                if keep == 0:
                    raise _PermError("macro keeps zero labels")
                parts = parts[-keep:]
            text = ".".join(parts)
            if m.group(1).isupper():
                text = urllib.parse.quote(text, safe="")
            out.append(text)
            i = end + 1
            continue
        else:
            raise _PermError("unreadable % in macro string")
        i += 2
    expanded = "".join(out).rstrip(".")
    while len(expanded) > MAX_DOMAIN and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded
