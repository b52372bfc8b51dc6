"""The organizational domain of a name (rfc7489:3.2), for DMARC policy discovery and relaxed
alignment.

It uses the Public Suffix List the system ships (Debian's ``publicsuffix`` package:
``/usr/share/publicsuffix/public_suffix_list.dat``) when present. Without it, a documented
heuristic: the public suffix is the last label, or the last two when they are one of the
common second-level registries in ``_TWO_LEVEL`` (``co.uk``, ``com.au``...). The heuristic
can only err towards a longer organizational domain for unlisted registries (``a.b.xx`` seen
as its own organization), which makes alignment stricter, never looser.
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["PSL_PATHS", "organizational_domain", "public_suffix_rules"]

PSL_PATHS: tuple[Path, ...] = (
    Path("/usr/share/publicsuffix/public_suffix_list.dat"),
    Path("/usr/share/publicsuffix/effective_tld_names.dat"),
)

_TWO_LEVEL = frozenset(
    f"{second}.{tld}"
    for tld, seconds in {
        "uk": ("co", "org", "ac", "gov", "ltd", "plc", "me", "net", "sch", "nhs"),
        "au": ("com", "net", "org", "edu", "gov", "asn", "id"),
        "nz": ("co", "org", "net", "ac", "govt", "school"),
        "jp": ("co", "ne", "or", "ac", "go", "ad", "ed", "gr", "lg"),
        "za": ("co", "org", "net", "gov", "ac", "web"),
        "br": ("com", "net", "org", "gov", "edu"),
        "cn": ("com", "net", "org", "gov", "edu", "ac"),
        "in": ("co", "net", "org", "gen", "firm", "ind", "ac", "edu", "gov"),
        "kr": ("co", "ne", "or", "re", "go", "ac"),
        "id": ("co", "or", "ac", "go", "web", "net", "sch", "my", "biz"),
        "il": ("co", "org", "net", "ac", "gov"),
        "tr": ("com", "net", "org", "gen", "biz", "info", "edu", "gov"),
        "mx": ("com", "net", "org", "gob", "edu"),
        "ar": ("com", "net", "org", "gob", "edu"),
        "sg": ("com", "net", "org", "gov", "edu"),
        "hk": ("com", "net", "org", "gov", "edu", "idv"),
        "tw": ("com", "net", "org", "gov", "edu", "idv"),
        "my": ("com", "net", "org", "gov", "edu"),
        "th": ("co", "or", "ac", "go", "in", "net"),
        "ua": ("com", "net", "org", "gov", "edu", "in"),
    }.items()
    for second in seconds
)


_Rules = tuple[frozenset[str], frozenset[str], frozenset[str]]


@functools.cache
def public_suffix_rules() -> _Rules | None:
    """(normal rules, wildcard bases, exceptions) from the system list, or None."""
    for path in PSL_PATHS:
        try:
            text = path.read_text("utf-8")
        except OSError:
            continue
        normal: set[str] = set()
        wildcard: set[str] = set()
        exception: set[str] = set()
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("//"):
                continue
            bang = words[0].startswith("!")
            try:
                body = ".".join(
                    lab if lab.isascii() else lab.encode("idna").decode("ascii")
                    for lab in words[0].lstrip("!").lower().split(".")
                )
            except UnicodeError:
                continue
            rule = "!" + body if bang else body
            if rule.startswith("!"):
                exception.add(rule[1:])
            elif rule.startswith("*."):
                wildcard.add(rule[2:])
            else:
                normal.add(rule)
        return frozenset(normal), frozenset(wildcard), frozenset(exception)
    return None


def _suffix_length(labels: list[str], rules: _Rules | None) -> int:
    """How many trailing labels of ``labels`` form the public suffix."""
    if rules is None:
        return 2 if len(labels) >= 3 and ".".join(labels[-2:]) in _TWO_LEVEL else 1
    normal, wildcard, exception = rules
    best = 1  # the implicit "*" rule
    for n in range(1, len(labels) + 1):
        candidate = ".".join(labels[-n:])
        if candidate in exception:
            return n - 1  # an exception rule: the suffix is one label shorter
        if candidate in normal:
            best = max(best, n)
        if n < len(labels) and candidate in wildcard:
            best = max(best, n + 1)
    return best


def organizational_domain(domain: str, *, use_system_list: bool = True) -> str:
    """rfc7489:3.2 the public suffix plus one label; a public suffix itself is returned as is.
    ``use_system_list=False`` forces the built-in heuristic."""
    labels = [x for x in domain.strip().rstrip(".").lower().split(".") if x]
    if not labels:
        return ""
    n = _suffix_length(labels, public_suffix_rules() if use_system_list else None)
    if n >= len(labels):
        return ".".join(labels)
    return ".".join(labels[-(n + 1) :])
