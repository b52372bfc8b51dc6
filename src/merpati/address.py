"""Mail address syntax (rfc5321:4.1.2, rfc6531:3.3) and the canonical forms Merpati stores.

- ``parse_address`` accepts ``local@domain`` where local is a dot-string or a quoted string,
  with UTF-8 allowed (SMTPUTF8), and domain is a host name (U-labels allowed) or an address
  literal ``[192.0.2.1]`` / ``[IPv6:...]``. It does not accept angle brackets or source routes:
  the SMTP parser strips those.
- Canonical domain: lowercase IDNA 2008 A-label (``bücher.de`` -> ``xn--bcher-kva.de``).
- Canonical address: local part case-folded (Merpati treats local parts case-insensitively, as
  every mainstream server does, although rfc5321:2.4 allows otherwise) + ``@`` + canonical domain.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

import idna

__all__ = [
    "Address",
    "AddressError",
    "canonical_address",
    "canonical_domain",
    "display_domain",
    "is_ascii_address",
    "parse_address",
]

# rfc5321:4.5.3.1.1 local part at most 64 octets; 4.5.3.1.2 domain at most 255 octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255

# atext of rfc5322:3.2.3 plus UTF8-non-ascii (rfc6531:3.3).
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*)"')
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


class AddressError(ValueError):
    """The text is not a usable mail address; the message says why."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str  # unquoted form
    domain: str  # canonical (A-label, lowercase) or an address literal "[...]"

    def __str__(self) -> str:
        return f"{quote_local(self.local)}@{self.domain}"

    @property
    def canonical(self) -> str:
        return f"{quote_local(self.local.casefold())}@{self.domain}"


def quote_local(local: str) -> str:
    if _DOT_STRING.fullmatch(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# Remembered (the answers are immutable): SMTP asks about the same few domains and addresses
# several times for every message. An error is not remembered; it is raised again.
@functools.lru_cache(maxsize=8192)
def canonical_domain(domain: str) -> str:
    """Lowercase A-label form of a host name; raises AddressError if it is not one."""
    d = domain.strip().rstrip(".")
    if not d:
        raise AddressError("empty domain")
    if d.startswith("[") and d.endswith("]"):
        return _address_literal(d)
    if d.isascii():
        labels = d.lower().split(".")
        if any(not _LABEL.fullmatch(label) for label in labels):
            raise AddressError(f"invalid domain {domain!r}")
        if labels[-1].isdigit():
            raise AddressError(f"invalid domain {domain!r}")
        out = ".".join(labels)
    else:
        try:
            out = idna.encode(d, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"invalid internationalised domain {domain!r}: {exc}") from None
    if len(out) > MAX_DOMAIN:
        raise AddressError("domain longer than 255 octets")
    return out


def display_domain(domain: str) -> str:
    """The U-label form for people, e.g. in `domain list`."""
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain


def client_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's IP address, an IPv4-mapped IPv6 address as the IPv4 address it is (what
    DNSBLs, greylisting, SPF and trusted networks must see); None if ``text`` is not one."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _address_literal(text: str) -> str:
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        raise AddressError(f"invalid address literal {text!r}") from None


@functools.lru_cache(maxsize=8192)
def parse_address(text: str) -> Address:
    """Parse ``local@domain``; raises AddressError with a reason."""
    if not text:
        raise AddressError("empty address")
    if text.startswith('"'):
        m = _QUOTED.match(text)
        if not m:
            raise AddressError("unterminated or invalid quoted local part")
        local = re.sub(r"\\(.)", r"\1", m.group(1))
        rest = text[m.end() :]
        if not rest.startswith("@"):
            raise AddressError("missing @domain")
        domain_text = rest[1:]
    else:
        at = text.rfind("@")
        if at <= 0:
            raise AddressError("missing local part or @domain")
        local, domain_text = text[:at], text[at + 1 :]
        if not _DOT_STRING.fullmatch(local):
            raise AddressError(f"invalid local part {local!r}")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part longer than 64 octets")
    if "@" in domain_text:
        raise AddressError("more than one @")
    return Address(local, canonical_domain(domain_text))


def canonical_address(text: str) -> str:
    return parse_address(text).canonical


def is_ascii_address(text: str) -> bool:
    return text.isascii()
