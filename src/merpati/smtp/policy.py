"""Who may send what to whom: the MAIL and RCPT decisions of the SMTP transport.

Roles (issue 4, INTERFACE.md): the ``smtp`` listener (MX) accepts mail only for local domains
(accounts, aliases, catch-all) unless the client authenticated; an unknown local user is
refused at RCPT (550 5.1.1, never accept-then-bounce); a local account known to be over quota
gets 452 4.2.2 at RCPT. Submission needs AUTH (the session enforces it) and a MAIL FROM the
account owns (553 5.7.1). Remote recipients need an outbound queue (451 4.3.0 without one).

Reads the account store and the mail store's quota; never writes. The SMTP core calls none of
this: the transport does, and answers the session's events with the replies returned here.
"""

from __future__ import annotations

from merpati.address import AddressError, canonical_address, canonical_domain
from merpati.app import App
from merpati.smtp import replies
from merpati.smtp.commands import Mail, Rcpt
from merpati.smtp.replies import Reply
from merpati.smtp.session import Role
from merpati.trust import hooks as trust_hooks


def check_mail(app: App, role: Role, account: str | None, mail: Mail) -> Reply:
    if role == "mx" and account is None:
        return replies.MAIL_OK  # rfc5321:4.5.5 the null sender is accepted for bounces
    if account is None:
        return replies.AUTH_REQUIRED
    if mail.address == "":
        return replies.NULL_SENDER_NOT_ALLOWED
    if not app.accounts.owns(account, mail.address):
        return replies.SENDER_NOT_OWNED
    return replies.MAIL_OK


async def check_rcpt(app: App, account: str | None, rcpt: Rcpt) -> tuple[Reply, str | None]:
    """The reply for RCPT and, when accepted, the canonical recipient address."""
    text = rcpt.address
    if text == "postmaster":  # rfc5321:4.1.1.3 Postmaster without a domain is ours
        domains = app.accounts.domains()
        host = app.config.hostname
        text = f"postmaster@{host if host in domains or not domains else domains[0]}"
    try:
        address = canonical_address(text)
        domain = canonical_domain(address.rsplit("@", 1)[1])
    except AddressError:
        return replies.BAD_ADDRESS, None
    accounts = app.accounts
    if not accounts.is_local_domain(domain):
        if account is None:
            return replies.RELAY_DENIED, None
        if app.queue is None:
            return replies.NO_QUEUE, None
        return replies.RCPT_OK, address
    expansion = accounts.expand(address)
    if not expansion.found:
        if trust_hooks.srs_target(app, address) is not None:  # issue 8: a bounce to SRS
            return (replies.RCPT_OK, address) if app.queue else (replies.NO_QUEUE, None)
        return replies.NO_SUCH_USER, None
    if expansion.remote and app.queue is None:
        return replies.NO_QUEUE, None
    for local in expansion.local:
        if await _over_quota(app, local):
            return replies.OVER_QUOTA, None
    return replies.RCPT_OK, address


async def _over_quota(app: App, account: str) -> bool:
    """Tell the sender early (452 4.2.2, rfc3463:3.3 mailbox full) when a mailbox is full."""
    info = app.accounts.get_account(account)
    if info is None or info.quota is None:
        return False
    try:
        used, limit = await app.mailstore.mailbox(account).quota()
    except Exception:  # the store will answer again at delivery; do not refuse on a hiccup
        return False
    return limit is not None and used >= limit
