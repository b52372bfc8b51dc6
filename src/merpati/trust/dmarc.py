"""DMARC, rfc7489: policy record discovery, identifier alignment, and the disposition a
failing message gets.

Discovery (rfc7489:6.6.3) asks ``_dmarc.FROM-DOMAIN`` and then ``_dmarc.ORG-DOMAIN``
(orgdomain). Alignment (rfc7489:3.1) is relaxed (same organizational domain) or strict (equal
names) per ``adkim``/``aspf``. A failing message gets ``sp`` when its From domain is below the
domain that published the record, otherwise ``p``; ``pct`` below 100 applies the policy to that
share of failing mail and the next milder policy to the rest (rfc7489:6.6.4).

Not done: aggregate and failure reports (``rua``/``ruf``) are not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from merpati.trust.lookup import DnsTempError, Lookup
from merpati.trust.orgdomain import organizational_domain

__all__ = [
    "Disposition",
    "DmarcOutcome",
    "DmarcRecord",
    "discover",
    "evaluate",
    "parse_record",
]

Disposition = Literal["none", "quarantine", "reject"]
DmarcResult = Literal["none", "pass", "fail", "temperror", "permerror"]
_POLICIES: tuple[Disposition, ...] = ("none", "quarantine", "reject")
_MILDER: dict[Disposition, Disposition] = {
    "reject": "quarantine",
    "quarantine": "none",
    "none": "none",
}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    p: Disposition
    sp: Disposition | None = None
    pct: int = 100
    adkim: Literal["r", "s"] = "r"
    aspf: Literal["r", "s"] = "r"


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    result: DmarcResult
    from_domain: str
    disposition: Disposition = "none"  # what we do with the message
    policy: Disposition | None = None  # the policy that applied (p or sp), None without one
    record: DmarcRecord | None = None
    reason: str = ""


def parse_record(text: bytes) -> DmarcRecord | None:
    """rfc7489:6.3 a TXT value, or None when it is not a usable DMARC record."""
    try:
        value = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for part in value.split(";"):
        key, eq, val = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), val.strip())
        elif part.strip():
            return None
    if value.split(";", 1)[0].replace(" ", "") != "v=DMARC1":
        return None  # rfc7489:6.3 v must come first and be exactly DMARC1
    p = _policy(tags.get("p", ""))
    if p is None:
        # rfc7489:6.6.3 step 6: an invalid or absent p with a valid rua is p=none.
        if "rua" not in tags:
            return None
        p = "none"
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    return DmarcRecord(
        p=p,
        sp=_policy(tags.get("sp", "")),
        pct=min(100, max(0, pct)),
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
    )


def _policy(text: str) -> Disposition | None:
    for p in _POLICIES:
        if text.strip().lower() == p:
            return p
    return None


async def _records_at(lookup: Lookup, domain: str) -> list[DmarcRecord]:
    answers = await lookup.txt(f"_dmarc.{domain}")
    texts = [a for a in answers if a.startswith(b"v=DMARC1")]
    if len(texts) != 1:
        return []  # rfc7489:6.6.3 step 5: more than one record, as if none
    record = parse_record(texts[0])
    return [record] if record is not None else []


async def discover(lookup: Lookup, from_domain: str) -> tuple[DmarcRecord | None, str]:
    """(record, the domain that published it); raises DnsTempError."""
    records = await _records_at(lookup, from_domain)
    if records:
        return records[0], from_domain
    org = organizational_domain(from_domain)
    if org and org != from_domain:
        records = await _records_at(lookup, org)
        if records:
            return records[0], org
    return None, from_domain


def aligned(a: str, b: str, mode: Literal["r", "s"]) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


async def evaluate(
    lookup: Lookup,
    from_domain: str,
    spf_result: str,
    spf_domain: str,
    dkim_passes: list[str],
    sample: float,
) -> DmarcOutcome:
    """DMARC for one author domain. ``dkim_passes`` are the d= of passing signatures;
    ``sample`` in [0, 1) is compared with pct (the caller's random draw)."""
    try:
        record, policy_domain = await discover(lookup, from_domain)
    except DnsTempError:
        return DmarcOutcome("temperror", from_domain, reason="DNS error looking up the policy")
    if record is None:
        return DmarcOutcome("none", from_domain, reason="no DMARC record")
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, record.aspf)
    dkim_ok = any(aligned(d, from_domain, record.adkim) for d in dkim_passes)
    if spf_ok or dkim_ok:
        return DmarcOutcome("pass", from_domain, "none", None, record)
    policy = record.p
    if policy_domain != from_domain and record.sp is not None:
        policy = record.sp
    disposition = policy if sample * 100 < record.pct else _MILDER[policy]
    return DmarcOutcome(
        "fail", from_domain, disposition, policy, record, "no aligned SPF or DKIM pass"
    )


def strictest(outcomes: list[DmarcOutcome]) -> DmarcOutcome:
    """Of several author domains, the outcome with the harshest disposition (then a failure
    before a pass), so a second From address cannot dilute a policy."""
    rank = {"reject": 2, "quarantine": 1, "none": 0}
    order = {"fail": 4, "temperror": 3, "permerror": 2, "pass": 1, "none": 0}
    return max(outcomes, key=lambda o: (rank[o.disposition], order[o.result]))
