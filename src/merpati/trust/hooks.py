"""Where the trust package meets the SMTP transport and the deliver function: each function
here is one call point, so that the protocol code carries one line per decision and none of
the policy.

- ``connect_refusal``: at accept, before the greeting (connection rate, DNSBL on ``smtp``).
- ``mail_refusal``: at MAIL FROM of an authenticated session (outbound rate per account).
- ``rcpt_refusal``: at RCPT TO of an unauthenticated ``smtp`` session (greylisting).
- ``check_message``: at the end of DATA on ``smtp`` without AUTH (SPF/DKIM/DMARC/ARC; the
  Authentication-Results field; 550 5.7.1 for DMARC p=reject; Junk for p=quarantine).
- ``srs_target``: RCPT and delivery of a bounce to one of our SRS addresses.
- ``forward``: deliver's remote copies made by an alias (SRS on the sender, ARC seal).
- ``start_trust``: a service that installs the DKIM signer into the outbound queue.

Clients in ``[policy] trusted_networks`` (loopback by default) skip the checks and limits.
Nothing here raises to its caller for a policy or DNS problem: a failure of a check is logged
and the mail goes on as if the check had not been configured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from merpati.delivery.api import Envelope
from merpati.queue.signing import set_signer
from merpati.trust import dnsbl
from merpati.trust.ratelimit import CONNECTION_RATE_REPLY, controls_for

if TYPE_CHECKING:
    from merpati.app import App
    from merpati.smtp.replies import Reply

__all__ = [
    "JUNK_FOLDER",
    "check_message",
    "connect_refusal",
    "forward",
    "mail_refusal",
    "rcpt_refusal",
    "srs_target",
    "start_trust",
]

JUNK_FOLDER = "Junk"  # rfc6154 \Junk, created with every account


async def connect_refusal(app: App, role: str, peer_ip: str) -> bytes | None:
    """The reply to send before closing, or None to go on with the greeting."""
    controls = controls_for(app)
    if controls.is_trusted(peer_ip):
        return None
    if not controls.connections.allow(peer_ip, time.monotonic()):
        app.log.event("trust.refused", peer=peer_ip, reason="connection-rate")
        return CONNECTION_RATE_REPLY
    zones = app.config.policy.dnsbl_zones
    if role == "mx" and zones:
        from merpati.trust.lookup import lookup_for

        hits = await dnsbl.check(lookup_for(app.config.dns), peer_ip, zones)
        if hits:
            app.log.event("trust.refused", peer=peer_ip, reason="dnsbl", zones=",".join(hits))
            return dnsbl.reply(peer_ip, hits)
    return None


def mail_refusal(app: App, account: str | None, peer_ip: str) -> Reply | None:
    """450 4.7.1 when an authenticated account is over its hourly message budget."""
    if account is None:
        return None
    controls = controls_for(app)
    if controls.is_trusted(peer_ip) or controls.outbound.allow(account, time.monotonic()):
        return None
    from merpati.smtp import replies

    app.log.event("trust.refused", account=account, reason="outbound-rate")
    return replies.reply(450, "4.7.1", "Sending limit reached for this account, try later")


async def rcpt_refusal(
    app: App, role: str, account: str | None, peer_ip: str, mail_from: str, rcpt: str
) -> Reply | None:
    """451 4.7.1 for a greylisted triplet (``smtp`` listener, no AUTH, greylisting on)."""
    controls = controls_for(app)
    grey = controls.greylist
    if grey is None or role != "mx" or account is not None or controls.is_trusted(peer_ip):
        return None
    try:
        decision = await grey.check_async(peer_ip, mail_from, rcpt)
    except Exception as exc:  # a broken greylist database must not stop mail
        app.log.event("trust.error", stage="greylist", error=type(exc).__name__)
        return None
    if decision.accept:
        return None
    from merpati.smtp import replies

    return replies.reply(451, "4.7.1", "Greylisted, please try again later")


async def check_message(
    app: App, envelope: Envelope, data: bytes
) -> tuple[Reply | None, Envelope, bytes]:
    """Authenticate a message received on ``smtp`` without AUTH. Returns a refusal (550
    5.7.1) or None, and the envelope and message to deliver (our Authentication-Results on
    top, forged ones removed; ``extra["folder"] = "Junk"`` for DMARC quarantine)."""
    from merpati.trust.inbound import check_inbound, strip_authentication_results

    cfg = app.config
    if controls_for(app).is_trusted(envelope.client_ip):
        # A local client: no checks, but it cannot plant results in our name either.
        return None, envelope, strip_authentication_results(data, cfg.hostname)
    try:
        verdict = await check_inbound(
            data,
            envelope.mail_from,
            envelope.helo or "",
            envelope.client_ip or "",
            cfg.hostname,
            cfg.dns,
        )
    except Exception as exc:  # never lose or refuse mail because a check broke
        app.log.event("trust.error", stage="inbound", error=type(exc).__name__)
        return None, envelope, data
    app.log.event(
        "trust.inbound",
        peer=envelope.client_ip,
        spf=verdict.spf.result,
        dkim=",".join(d.result for d in verdict.dkim) or "none",
        dmarc=verdict.dmarc.result,
        domain=verdict.dmarc.from_domain,
        disposition=verdict.disposition,
    )
    if verdict.disposition == "reject" and cfg.policy.dmarc_reject:
        from merpati.smtp import replies

        return replies.reply(550, "5.7.1", verdict.reject_text), envelope, data
    message = verdict.apply(data, cfg.hostname)
    if verdict.disposition in ("quarantine", "reject"):
        envelope = dataclasses.replace(envelope, extra={**envelope.extra, "folder": JUNK_FOLDER})
    return None, envelope, message


def srs_target(app: App, address: str) -> str | None:
    """The original sender when ``address`` is a valid SRS address of ours, else None."""
    from merpati.trust.srs import Srs, SrsError, is_srs, load_secret

    local = address.rpartition("@")[0]
    if not is_srs(local):
        return None
    try:
        return Srs(load_secret(app.config)).reverse(address)
    except (SrsError, OSError):
        return None


async def forward(
    app: App, envelope: Envelope, message: bytes, alias_domain: str
) -> tuple[Envelope, bytes]:
    """The envelope and message for copies an alias of ``alias_domain`` sends to remote
    addresses: SRS on a remote sender (rfc7208:3.2 would fail otherwise), ARC seal."""
    from merpati.trust.arc_seal import seal
    from merpati.trust.srs import Srs, SrsError, load_secret, rewrite_needed

    sender = envelope.mail_from
    sender_domain = sender.rpartition("@")[2]
    local_sender = bool(sender_domain) and app.accounts.is_local_domain(sender_domain)
    if rewrite_needed(sender, local_sender):
        try:
            srs = Srs(load_secret(app.config))
            envelope = dataclasses.replace(envelope, mail_from=srs.forward(sender, alias_domain))
        except (SrsError, OSError) as exc:
            app.log.event("trust.error", stage="srs", error=type(exc).__name__)
    sealed = await asyncio.to_thread(
        seal, message, alias_domain, app.config.data_dir, app.config.hostname
    )
    return envelope, sealed


def make_signer(app: App) -> Callable[[bytes, str], bytes]:
    """The queue's signer: DKIM with the From domain's keys when it has some (DMARC
    alignment), else the envelope sender domain's; unsigned when neither is ours."""
    from merpati.trust.dkim_keys import DkimKeyError, list_selectors
    from merpati.trust.dkim_sign import sign
    from merpati.trust.headers import from_domains

    data_dir = app.config.data_dir

    def signer(message: bytes, sender_domain: str) -> bytes:
        candidates = [*(from_domains(message) or [])[:1], sender_domain]
        for domain in candidates:
            if not domain:
                continue
            try:
                if list_selectors(data_dir, domain):
                    return sign(message, domain, data_dir)
            except DkimKeyError:
                continue
        return message

    return signer


class _TrustService:
    def __init__(self, uninstall: Callable[[], None]) -> None:
        self._uninstall = uninstall

    async def stop(self) -> None:
        self._uninstall()


async def start_trust(app: App) -> _TrustService:
    """Install the DKIM signer into the outbound queue; on stop, remove it and close the
    greylist database."""
    set_signer(make_signer(app))

    def uninstall() -> None:
        set_signer(None)
        grey = controls_for(app).greylist
        if grey is not None:
            grey.close()

    return _TrustService(uninstall)
