"""The queue runner: claims due messages, delivers them, records outcomes, sends DSNs.

Invariants:
- A message leaves the queue only after every recipient reached a final state (delivered or
  bounced) and the DSNs those states call for were handed to ``deliver`` (which stores or
  queues them durably). A crash anywhere leaves the message queued, so it is delivered at
  least once; at worst twice (crash after the peer's 250 and before the record).
- Recipients are grouped per destination (their domain, or the relay host): one transaction
  with many RCPTs, one connection reused for the next message to the same destination, at most
  ``concurrency_per_domain`` connections per destination and ``concurrency`` in total.
- 4xx replies and connection failures defer on the ``[delivery] retry`` schedule (its last step
  repeats); 5xx replies bounce; after ``delay_warning`` a delay DSN is sent once; after
  ``max_queue_time`` what is left bounces (rfc5321:4.5.4.1).
- No DSN for a null sender or for a message we generated (a bounce of a bounce), rfc3461:6.2.

It does not speak SMTP itself (``transport``), decide routes (``routing``) nor decide which
notices are due and when to retry (``notices``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from merpati.config import Config
from merpati.delivery.api import BodyType, Deliverer
from merpati.dns.resolver import Resolver
from merpati.queue import signing
from merpati.queue.client import Timeouts
from merpati.queue.dsn import DSNRecipient, build_dsn
from merpati.queue.notices import dsn_envelope, plan_end_of_attempt, retry_delay
from merpati.queue.routing import relay_route, route_domain
from merpati.queue.smtpproto import needs_smtputf8
from merpati.queue.store import QueuedMessage, QueuedRecipient, QueueStore, RecipientUpdate
from merpati.queue.transport import Destination, OutboundMessage, Outcome, TransportSettings

__all__ = ["QueueRunner", "RunnerDeps"]

POLL_INTERVAL = 1.0  # seconds between looks at the queue database (operator commands)
LEASE = 120.0  # seconds a claim lasts unless renewed
CLAIM_BATCH = 200  # messages claimed per look
MAX_IN_FLIGHT = 2000  # messages held in memory at once
CONNECTION_IDLE = 2.0  # seconds an open connection waits for more mail to its destination

_LOCAL = "local:"
_RELAY = "relay:"


@dataclass
class RunnerDeps:
    config: Config
    resolver: Resolver
    is_local: Callable[[str], bool]
    deliver: Callable[[], Deliverer | None]  # late-bound: app.deliver is set after we start
    log: Callable[..., None]
    tls_context: Callable[[], ssl.SSLContext] | None = None
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    poll_interval: float = POLL_INTERVAL


@dataclass(eq=False)
class _Work:
    msg: QueuedMessage
    outstanding: int = 0
    raw: bytes | None = None
    signed: bytes | None = None
    updates: list[RecipientUpdate] = field(default_factory=list)  # written by the finish


@dataclass(eq=False)
class _Job:
    work: _Work
    recipients: list[QueuedRecipient]


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _timeouts(config: Config) -> Timeouts:
    c = config.limits.command_timeout
    d = config.limits.data_timeout
    return Timeouts(
        connect=config.delivery.connect_timeout,
        greeting=c,
        command=c,
        data_init=min(120.0, c),
        data_block=min(180.0, d),
        data_end=d,
    )


class QueueRunner:
    def __init__(self, store: QueueStore, deps: RunnerDeps) -> None:
        self.store = store
        self.deps = deps
        cfg = deps.config
        self._settings = TransportSettings(
            hostname=cfg.hostname,
            timeouts=_timeouts(cfg),
            source_address=cfg.delivery.source_address,
            tls_context=deps.tls_context,
            relay_username=cfg.delivery.relay_username,
            relay_password=cfg.delivery.relay_password,
        )
        self._sem = asyncio.Semaphore(max(1, cfg.delivery.concurrency))
        self._per_domain = max(1, cfg.delivery.concurrency_per_domain)
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: dict[str, _Work] = {}
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, int] = {}
        self._arrivals: dict[str, asyncio.Event] = {}  # set when a job joins an idle queue
        self._slot_waiters = 0  # workers waiting for a connection slot
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._last_renew = 0.0

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="queue-runner")

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        for event in self._arrivals.values():
            event.set()
        if self._main is not None:
            await asyncio.wait([self._main], timeout=grace)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._main is not None and not self._main.done():
            self._main.cancel()
        # What was claimed and not finished goes back to the queue as it was.
        if self._inflight:
            await asyncio.to_thread(self.store.release, list(self._inflight))
            self._inflight.clear()

    async def _run(self) -> None:
        now = self.deps.clock()
        try:
            released = await asyncio.to_thread(self.store.release_stale_leases, now)
            removed = await asyncio.to_thread(self.store.remove_orphans, now)
            if released or removed:
                self.deps.log("queue.recovered", leases=released, orphans=removed)
        except Exception as exc:
            self.deps.log("queue.error", stage="start", error=type(exc).__name__)
        while not self._stopping:
            self._wake.clear()
            try:
                await self._tick()
            except Exception as exc:  # a broken database must not kill the runner
                self.deps.log("queue.error", error=type(exc).__name__, detail=str(exc)[:200])
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.deps.poll_interval)
            except TimeoutError:
                pass

    async def _tick(self) -> None:
        now = self.deps.clock()
        if self._inflight and now - self._last_renew > LEASE / 4:
            await asyncio.to_thread(self.store.renew_leases, now + LEASE)
            self._last_renew = now
        room = min(CLAIM_BATCH, MAX_IN_FLIGHT - len(self._inflight))
        if room <= 0:
            return
        msgs = await asyncio.to_thread(self.store.claim_due, now, LEASE, room, set(self._inflight))
        if msgs and not self._inflight:
            self._last_renew = now
        for msg in msgs:
            self._begin(msg)
        if len(msgs) == room:
            self._wake.set()  # more may be due

    # -- dispatch -----------------------------------------------------------------------
    def _begin(self, msg: QueuedMessage) -> None:
        work = _Work(msg)
        self._inflight[msg.id] = work
        if msg.bounce_requested:
            self._spawn(self._finalize(work, operator_bounce=True))
            return
        groups: dict[str, list[QueuedRecipient]] = {}
        relay = bool(self.deps.config.delivery.relay_host)
        for r in msg.pending:
            domain = _domain(r.address)
            try:
                local = self.deps.is_local(domain)
            except Exception:
                local = False
            key = _LOCAL if local else (_RELAY if relay else domain)
            groups.setdefault(key, []).append(r)
        if not groups:  # all final already (a crash before the DSN was sent)
            self._spawn(self._finalize(work))
            return
        work.outstanding = len(groups)
        for key, rcpts in groups.items():
            self._queues.setdefault(key, deque()).append(_Job(work, rcpts))
            arrival = self._arrivals.get(key)
            if arrival is not None:
                arrival.set()
            self._ensure_workers(key)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_workers(self, key: str) -> None:
        queue = self._queues.get(key)
        while (
            queue
            and not self._stopping
            and self._workers.get(key, 0) < self._per_domain
            and self._workers.get(key, 0) < len(queue)
        ):
            self._workers[key] = self._workers.get(key, 0) + 1
            self._spawn(self._worker(key))

    async def _worker(self, key: str) -> None:
        queue = self._queues[key]
        try:
            if self._sem.locked():
                # Idle connections give their slot to a destination with mail waiting.
                self._slot_waiters += 1
                for event in self._arrivals.values():
                    event.set()
                try:
                    await self._sem.acquire()
                finally:
                    self._slot_waiters -= 1
            else:
                await self._sem.acquire()
        except BaseException:
            self._worker_exit(key, queue)
            raise
        dest: Destination | None = None
        try:
            while not self._stopping:
                if not queue:
                    # Keep a working connection a moment for mail that follows.
                    if dest is None or not dest.connected or self._slot_waiters:
                        break
                    arrival = self._arrivals.setdefault(key, asyncio.Event())
                    arrival.clear()
                    try:
                        await asyncio.wait_for(arrival.wait(), CONNECTION_IDLE)
                    except TimeoutError:
                        break
                    continue
                job = queue.popleft()
                if dest is None and key != _LOCAL:
                    try:
                        dest = await self._destination(key)
                    except Exception as exc:
                        self.deps.log("queue.error", id=job.work.msg.id, error=type(exc).__name__)
                        failed = Outcome("deferred", 451, "4.3.0", "internal error")
                        await self._job_done(key, job, [failed] * len(job.recipients))
                        continue
                await self._job_done(key, job, await self._attempt(job, dest))
        finally:
            try:
                if dest is not None:
                    await dest.close()
            finally:
                self._sem.release()
                self._worker_exit(key, queue)

    def _worker_exit(self, key: str, queue: deque[_Job]) -> None:
        self._workers[key] -= 1
        if not self._workers[key] and not queue:
            del self._workers[key]
            self._queues.pop(key, None)
            self._arrivals.pop(key, None)
        self._ensure_workers(key)

    async def _attempt(self, job: _Job, dest: Destination | None) -> list[Outcome]:
        n = len(job.recipients)
        try:
            if dest is None:
                return await self._deliver_local(job)
            return await dest.send(await self._outbound(job))
        except FileNotFoundError:
            # The message file is gone (removed by hand, or by `queue remove` during this
            # attempt): nothing can ever be sent.
            return [Outcome("bounced", 550, "5.3.0", "the queued message file is missing")] * n
        except Exception as exc:
            self.deps.log("queue.error", id=job.work.msg.id, error=type(exc).__name__)
            return [Outcome("deferred", 451, "4.3.0", "internal error")] * n

    async def _destination(self, key: str) -> Destination:
        cfg = self.deps.config
        if key == _RELAY:
            route = relay_route(cfg)
        else:
            route = await route_domain(
                key, resolver=self.deps.resolver, config=cfg, rng=self.deps.rng
            )
        return Destination(route, self._settings, self.deps.resolver)

    async def _message_bytes(self, work: _Work) -> bytes:
        if work.raw is None:
            work.raw = await asyncio.to_thread(self.store.read_message, work.msg.id)
        return work.raw

    async def _outbound(self, job: _Job) -> OutboundMessage:
        work = job.work
        env = work.msg.envelope
        if work.signed is None:
            raw = await self._message_bytes(work)
            signer = signing.get_signer()
            work.signed = raw
            if signer is not None:
                try:
                    work.signed = await asyncio.to_thread(signer, raw, _domain(env.mail_from))
                except Exception as exc:
                    self.deps.log("queue.sign_failed", id=work.msg.id, error=type(exc).__name__)
        addresses = [r.address for r in job.recipients]
        needs_utf8 = needs_smtputf8(env.mail_from, addresses, work.signed)
        return OutboundMessage(
            mail_from=env.mail_from,
            recipients=tuple(r.recipient for r in job.recipients),
            data=work.signed,
            eight_bit=env.body is not BodyType.SEVEN_BIT,
            binary=env.body is BodyType.BINARY,
            smtputf8=env.smtputf8,
            needs_smtputf8=needs_utf8,
            ret=env.ret,
            envid=env.envid,
        )

    async def _deliver_local(self, job: _Job) -> list[Outcome]:
        n = len(job.recipients)
        deliver = self.deps.deliver()
        if deliver is None:
            return [Outcome("deferred", 451, "4.3.0", "local delivery is not available")] * n
        data = await self._message_bytes(job.work)
        env = dataclasses.replace(
            job.work.msg.envelope, recipients=tuple(r.recipient for r in job.recipients)
        )
        report = await deliver(env, data)
        by_addr = {o.recipient.address: o for o in report.outcomes}
        out: list[Outcome] = []
        for i, r in enumerate(job.recipients):
            o = by_addr.get(r.address)
            if o is None and i < len(report.outcomes):
                o = report.outcomes[i]
            if o is None:
                out.append(Outcome("deferred", 451, "4.3.0", "no delivery report"))
            elif o.ok:
                out.append(Outcome("delivered", o.code, o.status, o.text, mx="local"))
            elif 400 <= o.code < 500:
                out.append(Outcome("deferred", o.code, o.status, o.text, mx="local"))
            else:
                out.append(Outcome("bounced", o.code, o.status, o.text, mx="local"))
        return out

    # -- recording ----------------------------------------------------------------------
    async def _job_done(self, key: str, job: _Job, outcomes: list[Outcome]) -> None:
        try:
            await self._record_job(key, job, outcomes)
        except Exception as exc:
            # The database failed us: forget the message here and give its lease back; it
            # is tried again later (at worst a duplicate, never a loss).
            msg_id = job.work.msg.id
            self.deps.log("queue.error", id=msg_id, stage="record", error=type(exc).__name__)
            if self._inflight.pop(msg_id, None) is not None:
                try:
                    await asyncio.to_thread(self.store.release, [msg_id])
                except Exception:
                    self.deps.log("queue.error", id=msg_id, stage="release")

    async def _record_job(self, key: str, job: _Job, outcomes: list[Outcome]) -> None:
        work = job.work
        now = self.deps.clock()
        updates: list[RecipientUpdate] = []
        for r, o in zip(job.recipients, outcomes, strict=True):
            r.state = {"delivered": "delivered", "bounced": "bounced"}.get(o.result, "pending")  # type: ignore[assignment]
            r.attempts += 1
            reply = f"{o.code} {o.text}" if o.remote else o.text
            r.last_code, r.last_status, r.last_reply = o.code, o.status, reply
            if o.mx and key != _LOCAL:
                r.remote_mta = o.mx
            r.relayed = o.result == "delivered" and key != _LOCAL and not o.peer_dsn
            if o.result == "delivered" and o.peer_dsn:
                r.notified = True  # rfc3461:5.2 NOTIFY went on to the peer, which reports
            updates.append(
                RecipientUpdate(
                    r.idx,
                    r.state,
                    o.code,
                    o.status,
                    reply,
                    r.remote_mta,
                    r.relayed,
                    notified=r.notified,
                )
            )
            self.deps.log(
                "queue.attempt",
                id=work.msg.id,
                rcpt=r.address,
                mx=o.mx or "",
                ip=o.ip or "",
                tls=o.tls or "",
                code=o.code,
                status=o.status,
                reply=o.text[:300],
                result=o.result,
                delay=f"{now - work.msg.created:.1f}",
            )
        work.outstanding -= 1
        if work.outstanding == 0:
            work.updates.extend(updates)  # one transaction with the finish
            await self._finalize(work)
        else:
            await asyncio.to_thread(self.store.record, work.msg.id, updates)

    async def _finalize(self, work: _Work, operator_bounce: bool = False) -> None:
        try:
            await self._finalize_inner(work, operator_bounce)
        except Exception as exc:
            msg_id = work.msg.id
            self.deps.log("queue.error", id=msg_id, stage="finalize", error=type(exc).__name__)
            try:
                await asyncio.to_thread(self.store.release, [msg_id])
            except Exception:
                self.deps.log("queue.error", id=msg_id, stage="release")
        finally:
            self._inflight.pop(work.msg.id, None)
            work.raw = work.signed = None

    async def _finalize_inner(self, work: _Work, operator_bounce: bool) -> None:
        msg = work.msg
        if not await asyncio.to_thread(self.store.exists, msg.id):
            return  # removed by the operator meanwhile: no notice, nothing to record
        now = self.deps.clock()
        cfg = self.deps.config.delivery
        plan = plan_end_of_attempt(msg, now=now, cfg=cfg, operator_bounce=operator_bounce)
        work.updates.extend(plan.forced)
        if plan.notify_sender(msg.envelope) and not await self._send_dsn(work, plan.report, now):
            # Could not hand the DSN over: keep everything as it is and try again later.
            await asyncio.to_thread(
                self.store.finish,
                msg.id,
                attempts=plan.attempts,
                next_attempt=now + retry_delay(cfg.retry, 1),
                warned=msg.warned,
                delete=False,
                updates=work.updates,
            )
            return
        await asyncio.to_thread(
            self.store.finish,
            msg.id,
            attempts=plan.attempts,
            next_attempt=plan.next_attempt,
            warned=plan.warned,
            delete=plan.done,
            updates=work.updates,
            notified=plan.reported,
        )

    async def _send_dsn(self, work: _Work, report: list[DSNRecipient], now: float) -> bool:
        msg = work.msg
        env = msg.envelope
        cfg = self.deps.config
        try:
            original = await self._message_bytes(work)
        except FileNotFoundError:
            original = b"Subject: (the original message file was lost)\r\n\r\n"
        dsn = build_dsn(
            reporting_mta=cfg.hostname,
            sender=env.mail_from,
            original=original,
            recipients=report,
            arrival=msg.created,
            now=now,
            token=secrets.token_hex(8),
            ret=env.ret,
            envid=env.envid,
        )
        sender = env.mail_from
        dsn_env = dsn_envelope(sender, dsn)
        actions = ",".join(sorted({r.action for r in report}))
        # A notice that cannot be handed over is retried, but not past twice the queue time.
        give_up = now - msg.created >= 2 * cfg.delivery.max_queue_time
        deliver = self.deps.deliver()
        try:
            if deliver is not None:
                result = await deliver(dsn_env, dsn)
                if not result.all_ok:
                    failed = [o for o in result.outcomes if not o.ok]
                    temporary = any(400 <= o.code < 500 for o in failed)
                    self.deps.log(
                        "queue.dsn",
                        id=msg.id,
                        to=sender,
                        action=actions,
                        result="refused",
                        code=failed[0].code if failed else 0,
                    )
                    # A refused DSN is dropped (it cannot bounce); a temporary refusal is
                    # retried while the original is young enough.
                    return give_up or not temporary
            else:
                if self.deps.is_local(_domain(sender)):
                    self.deps.log("queue.dsn", id=msg.id, to=sender, result="no_local_delivery")
                    return give_up
                await asyncio.to_thread(self.store.enqueue_sync, dsn_env, dsn, dsn_env.recipients)
                self.wake()
        except Exception as exc:
            self.deps.log(
                "queue.dsn", id=msg.id, to=sender, result="error", error=type(exc).__name__
            )
            return give_up  # retried on the schedule until the message's time is up
        self.deps.log("queue.dsn", id=msg.id, to=sender, action=actions, result="sent")
        return True
