"""The one deliver function: every accepted message (SMTP, submission, APPEND of the future,
bounces, forwarding) goes through ``make_deliverer(app)``; the intake journal hands its groups
to ``deliver.many`` (the same steps, one mail store commit for the group).

For each envelope recipient: expand it with the account store (aliases, plus-addressing,
catch-all; loop-safe, deduplicated). Local accounts get one durable write through
``app.mailstore.deliver`` (one file, hard-linked into every mailbox) with ``Return-Path:`` and,
when the message goes to a single account, ``Delivered-To:`` (rfc5321:4.4; several accounts
share one hard-linked copy, so no per-account header is added then). Remote addresses are
handed to ``app.queue.enqueue`` (durable when it returns); without a queue they get a 451
4.3.0 temporary failure. Returns only when every copy is durable; never raises for a
recipient's failure (it becomes that recipient's outcome).

An envelope recipient succeeds if every copy is durable somewhere: when some of an alias's
accounts took the message and others failed (over quota), the failed accounts are enqueued
(the queue retries local recipients through this same function and bounces when it must); if
that is impossible the recipient fails, so the sender retries (a duplicate beats a loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from merpati.app import App
from merpati.delivery.api import (
    Deliverer,
    DeliveryReport,
    Envelope,
    Recipient,
    RecipientOutcome,
)
from merpati.mailstore.api import (
    Delivery,
    DeliveryResults,
    DeliveryTarget,
    MailStoreError,
    NoSuchFolder,
    QuotaExceeded,
)
from merpati.trust import hooks as trust_hooks

DELIVERY_KEY = "delivery_key"  # Envelope.extra: makes the mailbox writes idempotent
_OK = (250, "2.0.0", "Delivered")
_QUEUED = (250, "2.0.0", "Queued")
_UNKNOWN = (550, "5.1.1", "No such user here")
_OVER_QUOTA = (452, "4.2.2", "Mailbox full")
_TEMP = (451, "4.3.0", "Temporary failure, try again later")
_NO_QUEUE = (451, "4.3.0", "Cannot relay to remote recipients now, try again later")


def trace_prefix(envelope: Envelope, accounts: list[str]) -> bytes:
    """Return-Path (always) and Delivered-To (single account) for a final delivery."""
    head = f"Return-Path: <{envelope.mail_from}>\r\n"
    if len(accounts) == 1:
        head += f"Delivered-To: {accounts[0]}\r\n"
    return head.encode("utf-8")


@dataclass(slots=True)
class _Plan:
    """One message's recipients resolved: which accounts get it, which addresses are
    remote, which recipients failed already, and the bytes the mailboxes get."""

    envelope: Envelope
    message: bytes
    local_of: dict[Recipient, tuple[str, ...]] = field(default_factory=dict)
    remote_of: dict[Recipient, tuple[str, ...]] = field(default_factory=dict)
    failed: dict[Recipient, tuple[int, str, str]] = field(default_factory=dict)
    forwarded: dict[str, str] = field(default_factory=dict)  # remote address -> alias domain
    accounts: list[str] = field(default_factory=list)
    folder: str = "INBOX"

    @property
    def data(self) -> bytes:
        return trace_prefix(self.envelope, self.accounts) + self.message

    def delivery(self) -> Delivery:
        key = self.envelope.extra.get(DELIVERY_KEY)  # set by the intake: no double on replay
        targets = [DeliveryTarget(a, folder=self.folder) for a in self.accounts]
        return Delivery(self.data, targets, key)


class _Deliverer:
    """``merpati.delivery.api.Deliverer``: ``await deliver(envelope, message)``, or
    ``await deliver.many(items)`` for a group (one mail store commit for all of them)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, envelope: Envelope, message: bytes) -> DeliveryReport:
        return (await self.many([(envelope, message)]))[0]

    async def many(self, items: Sequence[tuple[Envelope, bytes]]) -> list[DeliveryReport]:
        plans = [self._plan(envelope, message) for envelope, message in items]
        stored = [p for p in plans if p.accounts]
        results: list[DeliveryResults] = []
        if stored:
            try:
                results = await self.app.mailstore.deliver_many([p.delivery() for p in stored])
            except Exception as exc:  # the store failed as a whole: nothing was delivered
                self.app.log.event("delivery.error", stage="store", error=type(exc).__name__)
                results = [[MailStoreError("store failure")] * len(p.accounts) for p in stored]
        result_of = {id(p): r for p, r in zip(stored, results, strict=True)}
        return [await self._finish(p, result_of.get(id(p), [])) for p in plans]

    def _plan(self, envelope: Envelope, message: bytes) -> _Plan:
        app = self.app
        plan = _Plan(envelope, message, folder=envelope.extra.get("folder", "INBOX"))
        for rcpt in envelope.recipients:
            expansion = app.accounts.expand(rcpt.address)
            if not expansion.found:
                bounce_to = trust_hooks.srs_target(app, rcpt.address)  # issue 8: SRS bounce
                if bounce_to is None:
                    plan.failed[rcpt] = _UNKNOWN
                    continue
                plan.local_of[rcpt], plan.remote_of[rcpt] = (), (bounce_to,)
                continue
            plan.local_of[rcpt] = expansion.local
            plan.remote_of[rcpt] = expansion.remote
            domain = rcpt.address.rpartition("@")[2]
            if expansion.remote and app.accounts.is_local_domain(domain):
                plan.forwarded.update(dict.fromkeys(expansion.remote, domain))
        plan.accounts = list(dict.fromkeys(a for accs in plan.local_of.values() for a in accs))
        return plan

    async def _finish(self, plan: _Plan, results: DeliveryResults) -> DeliveryReport:
        """The mailboxes' results in, the rest (remote and failed copies) to the queue."""
        app = self.app
        envelope, message, accounts = plan.envelope, plan.message, plan.accounts
        local_of, remote_of, forwarded = plan.local_of, plan.remote_of, plan.forwarded
        account_result: dict[str, tuple[int, str, str]] = {}
        if accounts:
            missing = [i for i, r in enumerate(results) if isinstance(r, NoSuchFolder)]
            if plan.folder != "INBOX" and missing:  # the account deleted its Junk folder
                key = envelope.extra.get(DELIVERY_KEY)
                again = await app.mailstore.deliver(
                    plan.data, [DeliveryTarget(accounts[i]) for i in missing], key=key
                )
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
            for account, result in zip(accounts, results, strict=True):
                if isinstance(result, QuotaExceeded):
                    account_result[account] = _OVER_QUOTA
                elif isinstance(result, MailStoreError):
                    account_result[account] = _TEMP
                else:
                    account_result[account] = _OK

        remote: dict[str, Recipient] = {}
        for rcpt, addresses in remote_of.items():
            for address in addresses:
                remote.setdefault(address, replace(rcpt, address=address))
        # A recipient (an alias) some of whose accounts got the message and some did not:
        # the failed accounts go to the queue, which retries them and bounces if it must.
        retry: dict[str, Recipient] = {}
        for rcpt, accs in local_of.items():
            failed_accs = [a for a in accs if account_result[a][0] >= 400]
            if failed_accs and len(failed_accs) < len(accs):
                for a in failed_accs:
                    retry.setdefault(a, replace(rcpt, address=a))
        queue_id: str | None = None
        remote_result = _QUEUED
        retried = False
        if remote or retry:
            if app.queue is None:
                remote_result = _NO_QUEUE
            else:
                try:
                    direct = [rc for a, rc in remote.items() if a not in forwarded]
                    by_alias: dict[str, list[Recipient]] = {}
                    for a, rc in remote.items():
                        if a in forwarded:
                            by_alias.setdefault(forwarded[a], []).append(rc)
                    if direct or retry:
                        queue_id = await app.queue.enqueue(
                            envelope, message, (*direct, *retry.values())
                        )
                    for alias_domain, rcpts in by_alias.items():
                        # issue 8: SRS on the sender and an ARC seal for forwarded copies.
                        fwd_env, fwd_msg = await trust_hooks.forward(
                            app, envelope, message, alias_domain
                        )
                        fwd_id = await app.queue.enqueue(fwd_env, fwd_msg, tuple(rcpts))
                        queue_id = queue_id or fwd_id
                    app.queue.wake()
                    retried = bool(retry)
                except Exception as exc:
                    app.log.event("delivery.error", stage="queue", error=type(exc).__name__)
                    remote_result = _TEMP

        outcomes = []
        for rcpt in envelope.recipients:
            outcome = plan.failed.get(rcpt)
            if outcome is None:
                results_for = [account_result[a] for a in local_of[rcpt]]
                if retried and any(a in retry for a in local_of[rcpt]):
                    results_for = [_QUEUED]
                elif any(a in retry for a in local_of[rcpt]):
                    results_for.append(remote_result)
                if remote_of[rcpt]:
                    results_for.append(remote_result)
                bad = [r for r in results_for if r[0] >= 400]
                outcome = bad[0] if bad else (results_for[0] if results_for else _OK)
            code, status, text = outcome
            outcomes.append(RecipientOutcome(rcpt, code < 400, code, status, text))
        return DeliveryReport(tuple(outcomes), queue_id)


def make_deliverer(app: App) -> Deliverer:
    return _Deliverer(app)
