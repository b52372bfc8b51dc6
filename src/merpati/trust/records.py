"""The DNS records a domain served by Merpati publishes, and a comparison with what DNS says.

``records_for(config, domain)``: MX; SPF ``v=spf1 mx -all``; one DKIM TXT per selector in the
data directory (old selectors stay until removed); DMARC ``p=quarantine`` with aggregate
reports to postmaster; MTA-STS (rfc8461: the ``_mta-sts`` TXT, the ``mta-sts`` host, and the
policy file text in ``mta_sts_policy``); TLS-RPT (rfc8460); the rfc6186 SRV records for
submission, IMAP and POP3 (port from the first configured address of each listener; a
listener that is off is published as "not offered", target ".").

``check(records, nameservers)`` asks DNS (all records at once) and returns one
``CheckResult`` per record; TXT values are compared by tags, not spacing, and a DMARC record
with p=reject counts as matching the suggested p=quarantine. It never changes anything.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import asdict, dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from merpati.config import Config
from merpati.trust.dkim_keys import canonical_domain, list_selectors, txt_record
from merpati.trust.dmarc import parse_record

__all__ = [
    "DEFAULT_TTL",
    "CheckResult",
    "Record",
    "check",
    "check_async",
    "mta_sts_policy",
    "records_for",
    "zone_lines",
]

DEFAULT_TTL = 3600
MTA_STS_MAX_AGE = 86400  # rfc8461:3.2 seconds; one day while in testing mode
# rfc6186:3.1 SRV services and the listener that provides each one.
_SRV: tuple[tuple[str, str], ...] = (
    ("_submission._tcp", "submission"),
    ("_submissions._tcp", "submissions"),
    ("_imap._tcp", "imap"),
    ("_imaps._tcp", "imaps"),
    ("_pop3._tcp", "pop3"),
    ("_pop3s._tcp", "pop3s"),
)


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # fully qualified, with the final dot
    type: Literal["MX", "TXT", "CNAME", "SRV"]
    value: str  # rdata; for TXT the text itself, unquoted
    purpose: str
    ttl: int = DEFAULT_TTL

    def rdata(self) -> str:
        """The value as zone-file rdata (TXT quoted and split into 255-byte strings)."""
        if self.type != "TXT":
            return self.value
        raw = self.value
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)

    def zone_line(self) -> str:
        return f"{self.name}\t{self.ttl}\tIN\t{self.type}\t{self.rdata()}"

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def mta_sts_policy(config: Config) -> str:
    """rfc8461:3.2 the policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt."""
    return (
        "version: STSv1\r\n"
        "mode: testing\r\n"
        f"mx: {config.hostname}\r\n"
        f"max_age: {MTA_STS_MAX_AGE}\r\n"
    )


def _srv_value(config: Config, listener: str) -> str:
    addresses = getattr(config.listen, listener)
    if not addresses:
        return "0 0 0 ."  # rfc6186:3.4 the service is not offered
    port = addresses[0].port
    return f"0 1 {port} {config.hostname}."


def records_for(config: Config, domain: str) -> list[Record]:
    """Every record to publish for ``domain``, in the order a zone file would list them."""
    d = canonical_domain(domain)
    host = config.hostname
    postmaster = f"mailto:postmaster@{d}"
    policy_id = hashlib.sha256(mta_sts_policy(config).encode()).hexdigest()[:20]
    out = [
        Record(f"{d}.", "MX", f"10 {host}.", "mail for the domain goes to this server"),
        Record(f"{d}.", "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for it"),
    ]
    for key in list_selectors(config.data_dir, d):
        out.append(
            Record(
                f"{key.selector}._domainkey.{d}.",
                "TXT",
                txt_record(key),
                f"DKIM {key.algorithm} key",
            )
        )
    out += [
        Record(
            f"_dmarc.{d}.",
            "TXT",
            f"v=DMARC1; p=quarantine; rua={postmaster}",
            "DMARC policy and aggregate reports",
        ),
        Record(f"_mta-sts.{d}.", "TXT", f"v=STSv1; id={policy_id}", "MTA-STS policy version"),
        Record(f"mta-sts.{d}.", "CNAME", f"{host}.", "MTA-STS policy host (HTTPS)"),
        Record(f"_smtp._tls.{d}.", "TXT", f"v=TLSRPTv1; rua={postmaster}", "TLS reporting"),
    ]
    for service, listener in _SRV:
        out.append(
            Record(
                f"{service}.{d}.",
                "SRV",
                _srv_value(config, listener),
                f"client settings discovery ({listener})",
            )
        )
    return out


def zone_lines(config: Config, domain: str, records: list[Record] | None = None) -> list[str]:
    """The records as zone-file lines, with the MTA-STS policy text as comments."""
    d = canonical_domain(domain)
    if records is None:
        records = records_for(config, d)
    lines = [f"; DNS records for {d} (mail server {config.hostname})"]
    lines += [r.zone_line() for r in records]
    lines.append(f"; MTA-STS policy, served at https://mta-sts.{d}/.well-known/mta-sts.txt:")
    lines += [f";   {line}" for line in mta_sts_policy(config).splitlines()]
    return lines


@dataclass(frozen=True, slots=True)
class CheckResult:
    record: Record
    status: Literal["ok", "missing", "different", "error"]
    found: tuple[str, ...] = ()
    detail: str = ""


def _normal(text: str) -> str:
    """Compare TXT values the way receivers read them: tags, not spacing."""
    parts = [p.strip() for p in text.strip().rstrip(";").split(";")]
    return "; ".join(" ".join(p.split()) for p in parts)


def _found_values(answer: dns.resolver.Answer, kind: str) -> tuple[str, ...]:
    out: list[str] = []
    for r in answer:
        if kind == "TXT":
            out.append(b"".join(r.strings).decode("utf-8", "replace"))
        elif kind == "MX":
            out.append(f"{r.preference} {r.exchange.to_text().lower()}")
        elif kind == "CNAME":
            out.append(r.target.to_text().lower())
        else:
            out.append(f"{r.priority} {r.weight} {r.port} {r.target.to_text().lower()}")
    return tuple(out)


def _matches(record: Record, found: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """(is it there, the found values that compete with it)."""
    if record.type == "TXT":
        prefix = record.value.split(";")[0].split(" ")[0].lower()  # v=spf1, v=DKIM1...
        rivals = tuple(f for f in found if f.lower().startswith(prefix))
        if record.name.startswith("_dmarc."):
            # A stricter policy than the suggested p=quarantine is as good (rfc7489:6.3).
            strict = [parse_record(f.encode("utf-8", "replace")) for f in rivals]
            ok = len(rivals) == 1 and any(r and r.p in ("quarantine", "reject") for r in strict)
            return ok, rivals
        want = _normal(record.value)
        return any(_normal(f) == want for f in rivals), rivals
    if record.type == "MX":
        host = record.value.split()[1].lower()
        return any(f.split()[1] == host for f in found), found
    return any(f.lower() == record.value.lower() for f in found), found


def check(
    records: list[Record], nameservers: tuple[tuple[str, int], ...], timeout: float
) -> list[CheckResult]:
    """Ask DNS for each record (all at once) and compare."""
    return asyncio.run(check_async(records, nameservers, timeout))


async def check_async(
    records: list[Record], nameservers: tuple[tuple[str, int], ...], timeout: float
) -> list[CheckResult]:
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout

    async def one(record: Record) -> CheckResult:
        kind = dns.rdatatype.from_text(record.type)
        try:
            answer = await resolver.resolve(dns.name.from_text(record.name), kind, search=False)
            found = _found_values(answer, record.type)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            found = ()
        except dns.exception.DNSException as exc:
            return CheckResult(record, "error", (), type(exc).__name__)
        ok, rivals = _matches(record, found)
        if ok:
            return CheckResult(record, "ok", found)
        if rivals:
            return CheckResult(record, "different", rivals)
        return CheckResult(record, "missing", found)

    return list(await asyncio.gather(*(one(r) for r in records)))
