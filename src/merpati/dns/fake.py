"""An in-memory ``Resolver`` for unit tests: records in dicts, with NXDOMAIN and
temporary-failure sets. It does no I/O and keeps a count of lookups per name."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from merpati.dns.resolver import DNSNotFound, DNSTemporaryError

__all__ = ["FakeResolver"]


def _key(name: str) -> str:
    return name.rstrip(".").lower()


@dataclass
class FakeResolver:
    mx_records: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a_records: dict[str, list[str]] = field(default_factory=dict)
    aaaa_records: dict[str, list[str]] = field(default_factory=dict)
    txt_records: dict[str, list[str]] = field(default_factory=dict)
    nxdomain: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)  # names whose lookups fail temporarily
    lookups: Counter[str] = field(default_factory=Counter)

    def _check(self, name: str) -> str:
        key = _key(name)
        self.lookups[key] += 1
        if key in self.failing:
            raise DNSTemporaryError(f"{key}: SERVFAIL (fake)")
        known = (self.mx_records, self.a_records, self.aaaa_records, self.txt_records)
        if key in self.nxdomain or not any(key in table for table in known):
            raise DNSNotFound(f"{key}: no such domain")
        return key

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        key = self._check(domain)
        return [(pref, _key(host)) for pref, host in self.mx_records.get(key, [])]

    async def addresses(self, host: str) -> list[str]:
        key = self._check(host)
        return list(self.aaaa_records.get(key, [])) + list(self.a_records.get(key, []))

    async def txt(self, name: str) -> list[str]:
        key = self._check(name)
        return list(self.txt_records.get(key, []))
