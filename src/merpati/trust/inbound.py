"""Inbound authentication of mail received on the ``smtp`` (MX) listener: SPF for MAIL FROM
and HELO, DKIM, DMARC and ARC, combined into one ``Authentication-Results:`` field (rfc8601)
and a DMARC disposition.

Call point (the SMTP transport, at the end of DATA on the ``smtp`` listener only, once the
message bytes are complete and before they are handed to ``deliver``)::

    verdict = await check_inbound(message, mail_from, helo, client_ip, config.hostname,
                                  config.dns)
    if verdict.disposition == "reject" and config.policy.dmarc_reject:
        reply 550 5.7.1 with verdict.reject_text
    message = verdict.apply(message, config.hostname)   # strip forged A-R, prepend ours
    deliver(...); if verdict.disposition == "quarantine": file into Junk

Every check is bounded in time (``CHECK_DEADLINE``); a DNS failure or overrun is a
``temperror`` result, never an exception. This module does not refuse or file anything itself.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from merpati.config import DNSConfig
from merpati.trust.dkim_verify import ArcOutcome, DkimOutcome, verify_arc, verify_dkim
from merpati.trust.dmarc import Disposition, DmarcOutcome, evaluate, strictest
from merpati.trust.headers import fold, from_domains, iter_fields, remove_fields, split_message
from merpati.trust.lookup import Lookup, lookup_for
from merpati.trust.spf import SpfOutcome, check_host

__all__ = [
    "CHECK_DEADLINE",
    "InboundVerdict",
    "authentication_results_fields",
    "authserv_id_of",
    "check_inbound",
    "strip_authentication_results",
]

CHECK_DEADLINE = 20.0  # rfc7208:4.6.4 at least 20 s for SPF; the same bound for each check
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class InboundVerdict:
    authentication_results: str  # the field value, authserv-id first
    disposition: Disposition  # DMARC: none, quarantine (Junk) or reject (550 5.7.1)
    spf: SpfOutcome
    helo_spf: SpfOutcome
    dkim: tuple[DkimOutcome, ...]
    dmarc: DmarcOutcome
    arc: ArcOutcome

    @property
    def header(self) -> bytes:
        """The folded ``Authentication-Results:`` field, CRLF ended."""
        return fold("Authentication-Results", self.authentication_results)

    @property
    def reject_text(self) -> str:
        """Text of the 550 5.7.1 reply (no exception text, only the public verdict)."""
        return f"Message refused by the DMARC policy of {self.dmarc.from_domain}"

    def apply(self, message: bytes, authserv_id: str) -> bytes:
        """``message`` without A-R fields claiming ``authserv_id`` and with ours on top."""
        return self.header + strip_authentication_results(message, authserv_id)


def authserv_id_of(value: str) -> str:
    """rfc8601:2.2 the first token of a field value, comments skipped."""
    text = value
    while True:
        text = text.lstrip()
        if not text.startswith("("):
            break
        depth = 0
        for i, c in enumerate(text):
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    text = text[i + 1 :]
                    break
        else:
            return ""
    m = re.match(r"[^\s;()]+", text)
    return m.group(0).lower().rstrip(".") if m else ""


def strip_authentication_results(message: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields claiming ``authserv_id`` (rfc8601:5: a receiver
    must not let a sender forge its own results)."""
    ours = authserv_id.lower().rstrip(".")
    return remove_fields(
        message,
        lambda f: f.name == "authentication-results" and authserv_id_of(f.value) == ours,
    )


async def _bounded(aw: Awaitable[_T], fallback: _T) -> _T:
    try:
        return await asyncio.wait_for(aw, CHECK_DEADLINE)
    except TimeoutError:
        return fallback


def _comment(text: str) -> str:
    clean = re.sub(r"[^\x20-\x7e]|[()\\]", "", text).strip()
    return f" ({clean})" if clean else ""


def _pvalue(text: str) -> str:
    """rfc8601:2.2 a property value: as is when it is a token or local@domain, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]*@?[A-Za-z0-9.\-]+", text):
        return text
    return '"' + re.sub(r'(["\\])', r"\\\1", re.sub(r"[^\x20-\x7e]", "?", text)) + '"'


def _render(
    hostname: str,
    spf: SpfOutcome,
    helo_spf: SpfOutcome,
    mail_from: str,
    helo: str,
    dkim: list[DkimOutcome],
    dmarc: DmarcOutcome,
    arc: ArcOutcome,
) -> str:
    parts = [hostname]
    if mail_from:
        parts.append(f"spf={spf.result}{_comment(spf.reason)} smtp.mailfrom={_pvalue(mail_from)}")
    if helo:
        parts.append(f"spf={helo_spf.result}{_comment(helo_spf.reason)} smtp.helo={_pvalue(helo)}")
    if not dkim:
        parts.append("dkim=none")
    for d in dkim:
        props = f" header.d={_pvalue(d.domain or 'unknown')} header.s={_pvalue(d.selector or 'x')}"
        if d.algorithm:
            props += f" header.a={_pvalue(d.algorithm)}"
        if d.b_prefix:
            props += f" header.b={_pvalue(d.b_prefix)}"
        parts.append(f"dkim={d.result}{_comment(d.reason)}{props}")
    note = ""
    if dmarc.record is not None:
        note = f"p={dmarc.record.p}"
        if dmarc.record.sp:
            note += f" sp={dmarc.record.sp}"
        note += f" pct={dmarc.record.pct} dis={dmarc.disposition}"
    elif dmarc.reason:
        note = dmarc.reason
    from_prop = f" header.from={_pvalue(dmarc.from_domain)}" if dmarc.from_domain else ""
    parts.append(f"dmarc={dmarc.result}{_comment(note)}{from_prop}")
    parts.append(f"arc={arc.result}{_comment(arc.reason)}")
    return "; ".join(parts)


async def check_inbound(
    message: bytes,
    mail_from: str,
    helo: str,
    client_ip: str,
    hostname: str,
    resolver_config: DNSConfig | Lookup,
    *,
    sample: Callable[[], float] = random.random,
) -> InboundVerdict:
    """Authenticate one received message; see the module docstring for the call point."""
    lookup = lookup_for(resolver_config)
    helo_name = helo.strip().strip("[]")
    mail_from = mail_from.strip().strip("<>")
    temp = SpfOutcome("temperror", "", "checks took too long")
    # rfc7208:2.4 an empty MAIL FROM is checked as postmaster@HELO.
    helo_identity = f"postmaster@{helo_name}"
    spf_domain = mail_from.rpartition("@")[2] if mail_from else helo_name
    spf_task = _bounded(
        check_host(lookup, client_ip, spf_domain, mail_from or helo_identity, helo_name),
        temp,
    )
    helo_task = _bounded(check_host(lookup, client_ip, helo_name, helo_identity, helo_name), temp)
    dkim_task = _bounded(verify_dkim(message, lookup), [])
    arc_task = _bounded(verify_arc(message, lookup), ArcOutcome("fail", 0, "took too long"))
    spf, helo_spf, dkim, arc = await asyncio.gather(spf_task, helo_task, dkim_task, arc_task)
    dkim_passes = [d.domain for d in dkim if d.result == "pass"]
    authors = from_domains(message)
    if authors is None:
        dmarc = DmarcOutcome("permerror", "", reason="no single readable From field")
    else:
        draw = sample()
        outcomes = await asyncio.gather(
            *(
                _bounded(
                    evaluate(lookup, domain, spf.result, spf_domain, dkim_passes, draw),
                    DmarcOutcome("temperror", domain, reason="took too long"),
                )
                for domain in sorted(set(authors))
            )
        )
        dmarc = strictest(list(outcomes))
    value = _render(hostname, spf, helo_spf, mail_from, helo_name, dkim, dmarc, arc)
    return InboundVerdict(value, dmarc.disposition, spf, helo_spf, tuple(dkim), dmarc, arc)


def authentication_results_fields(message: bytes) -> list[str]:
    """The values of every Authentication-Results field of ``message`` (for tests and logs)."""
    header, _ = split_message(message)
    return [f.value for f in iter_fields(header) if f.name == "authentication-results"]
