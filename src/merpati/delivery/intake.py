"""Intake: accepted messages are made durable in the journal, answered, then delivered.

``accept(envelope, message)`` returns once the message is fsynced in the intake journal
(``merpati.delivery.journal``); SMTP sends its ``250`` then. That is one ``fdatasync`` for a
group of messages, where delivering into the mailboxes first costs a file, a directory and an
index fsync per account (rfc5321:4.2.5 and 6.1 ask only that the message be durable, "in the
queue" as Postfix puts it, before the ``250``). Journaled messages are then delivered in
groups (up to 64, or after 50 ms) by the delivery agent process (``merpati.delivery.agent``;
in an in-process server, by this process) through the one ``deliver`` function; recipients
that fail there (a mailbox filled up since RCPT, an account removed) are handed to the
outbound queue, which retries local recipients and sends the bounce when it must (issue 4:
"else a bounce"). Then a ``DONE`` record for each message is written. After a crash, every
message without ``DONE`` is delivered again at start: nothing acknowledged is lost, and a
message delivered just before the crash is recognised by its delivery key and not stored
twice.

At most ``[limits] intake_backlog`` bytes of accepted messages wait for delivery; past that,
``accept`` waits, so a sender faster than the mailboxes is slowed to their pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

from merpati.delivery.agent import AgentClient
from merpati.delivery.api import Envelope
from merpati.delivery.codec import envelope_from_dict, envelope_to_dict
from merpati.delivery.deliver import DELIVERY_KEY
from merpati.delivery.group import RETRY_SECONDS, GroupDelivery
from merpati.delivery.journal import (
    HEADER_SIZE,
    KIND_DONE,
    KIND_MSG,
    Claim,
    MsgRef,
    SegmentWriter,
    adopt,
    claim,
    done_payload,
    encode,
    msg_payload,
    read_payload,
    scan,
    split_msg,
)
from merpati.durable import fsync_dir

if TYPE_CHECKING:
    from merpati.app import App

SEGMENT_BYTES = 64 * 1024 * 1024
DONE_FLUSH_SECONDS = 0.02
DELIVERY_DELAY_SECONDS = 0.05  # how long a journaled message waits for others to go with
DELIVERY_BATCH = 64  # or until this many are waiting
INLINE_SYNC_SECONDS = 0.002


class _Budget:
    """Bytes of accepted, not yet delivered messages; ``acquire`` waits while over the limit
    (one message always fits, however large, so a big message cannot wait forever)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


class Intake:
    """Implements ``merpati.delivery.api.Intake`` and ``merpati.server.registry.Service``."""

    def __init__(
        self,
        app: App,
        claimed: Claim,
        writer: SegmentWriter,
        next_seq: int,
        old: list[Path],
        pending: list[MsgRef],
        agent: AgentClient | None = None,
    ) -> None:
        """``old``: the segments a previous run left, oldest first; ``pending``: their
        messages without DONE (delivered by ``replay``); ``agent``: the delivery agent process
        that delivers (None: this process does)."""
        self.app = app
        self.directory = claimed.directory
        self._lock_fd = claimed.lock_fd  # held while we run: the journal is ours alone
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="intake-journal")
        self._writer = writer
        self._next_seq = next_seq
        self._budget = _Budget(app.config.limits.intake_backlog)
        self._writes: list[tuple[bytes, int, asyncio.Future[MsgRef]]] = []
        self._done: list[int] = []  # delivered, DONE not yet written
        self._runner: asyncio.Task[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._undone: dict[Path, set[int]] = {writer.path: set()}  # MSGs without durable DONE
        self._sealed = list(old)  # older segments, oldest first; deleted when all done
        self._where: dict[int, Path] = {}  # MSG seq -> its segment, until its DONE is durable
        for path in old:
            self._undone[path] = set()
        for ref in pending:  # before anything is written, or a segment could go too early
            self._undone[ref.segment].add(ref.seq)
            self._where[ref.seq] = ref.segment
        self._recovered = pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: list[tuple[MsgRef, Envelope, bytes]] = []  # journaled, not yet handed on
        self._group = GroupDelivery(app, lambda: self._closing)
        self._agent = agent
        self._deliver_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._sync_seconds = 0.0  # moving average of a journal write's duration
        self._key_prefix, self._keys = token_hex(8) + ".", 0
        self.deliveries = app.metrics.counter(
            "merpati_intake_deliveries_total", "Journal messages handed to delivery", ["result"]
        )
        app.metrics.gauge(
            "merpati_intake_backlog_bytes", "Accepted bytes waiting for delivery"
        ).set_function(lambda: float(self._budget.used))

    # -- accepting -------------------------------------------------------------------------
    async def accept(self, envelope: Envelope, message: bytes) -> str:
        """Durably journal the message; return its intake id. Raises if it could not be made
        durable (the caller answers 451: nothing was accepted)."""
        if self._closing:
            raise RuntimeError("intake is stopping")
        await self._budget.acquire(len(message))
        # A key of its own, so a redelivery after a crash is recognised by the mailboxes.
        envelope = replace(envelope, extra={**envelope.extra, DELIVERY_KEY: self._key()})
        try:
            seq = self._next_seq
            self._next_seq += 1
            record = encode(KIND_MSG, seq, msg_payload(envelope_to_dict(envelope), message))
            future: asyncio.Future[MsgRef] = asyncio.get_running_loop().create_future()
            self._writes.append((record, seq, future))
            self._kick()
            ref = await future
        except BaseException:
            await self._budget.release(len(message))
            raise
        self._ready.append((ref, envelope, message))
        self._schedule_deliveries()
        return f"j{seq}"

    def _key(self) -> str:
        """A delivery key no other message gets: random per process, then a counter (one
        ``getrandom`` per message cost a system call on the event loop's thread)."""
        self._keys += 1
        return f"{self._key_prefix}{self._keys:x}"

    def _schedule_deliveries(self) -> None:
        """Deliver in groups: the store commits a group with one round of fsyncs, where one
        message at a time would pay the whole round each (docs/smtp.md has the figures)."""
        if len(self._ready) >= DELIVERY_BATCH:
            self._start_deliveries()
        elif self._deliver_timer is None:
            loop = asyncio.get_running_loop()
            self._deliver_timer = loop.call_later(DELIVERY_DELAY_SECONDS, self._start_deliveries)

    def _start_deliveries(self) -> None:
        if self._deliver_timer is not None:
            self._deliver_timer.cancel()
            self._deliver_timer = None
        ready, self._ready = self._ready, []
        if ready:
            self._spawn(self._deliver(ready))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the writer --------------------------------------------------------------------------
    def _kick(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    def _kick_later(self) -> None:
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()

            def fire() -> None:
                self._flush_timer = None
                self._kick()

            self._flush_timer = loop.call_later(DONE_FLUSH_SECONDS, fire)

    async def _run(self) -> None:
        while self._writes or self._done:
            writes, self._writes = self._writes, []
            done, self._done = self._done, []
            records = [r for r, _, _ in writes]
            if done:
                records.append(encode(KIND_DONE, 0, done_payload(done)))
            segment = self._writer.path
            try:
                if writes:
                    offset = await self._append(records)
                else:  # DONE records alone need no fsync of their own (docs/smtp.md)
                    offset = self._writer.append(records, sync=False)
            except OSError as exc:
                self.app.log.event("intake.error", stage="journal", error=str(exc))
                for _, _, future in writes:
                    if not future.done():
                        future.set_exception(exc)
                self._done = done + self._done
                # What was half-written stays as a torn tail; new records go to a new file.
                with contextlib.suppress(OSError):
                    await self._rotate()
                await asyncio.sleep(0.1)
                continue
            for record, seq, future in writes:
                self._undone[segment].add(seq)
                self._where[seq] = segment
                ref = MsgRef(seq, segment, offset + HEADER_SIZE, len(record) - HEADER_SIZE)
                offset += len(record)
                if not future.done():
                    future.set_result(ref)
            for seq in done:
                where = self._where.pop(seq, None)
                if where is not None:
                    self._undone[where].discard(seq)
            await self._forget_done_segments()
            if self._writer.size >= SEGMENT_BYTES:
                await self._rotate()

    async def _append(self, records: list[bytes]) -> int:
        """Write and fdatasync ``records``. On the event loop's own thread while that takes
        under ``INLINE_SYNC_SECONDS`` on average: handing a fast fsync to the writer thread and
        being woken for its result cost the loop more than the fsync itself (20 sessions:
        1,813-1,903 msg/s inline against 1,554-1,700 with the thread for groups of three or
        more); a slow disk goes back to the thread, so the loop never waits for it."""
        started = time.monotonic()
        try:
            if self._sync_seconds < INLINE_SYNC_SECONDS:
                return self._writer.append(records)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._writer.append, records)
        finally:  # a moving average of how long a write and its fsync take
            seconds = time.monotonic() - started
            self._sync_seconds = 0.8 * self._sync_seconds + 0.2 * seconds

    async def _rotate(self) -> None:
        loop = asyncio.get_running_loop()
        old = self._writer
        first = self._next_seq
        self._next_seq += 1  # a seq of its own, so a new name even if nothing is written
        self._writer = await loop.run_in_executor(
            self._thread, SegmentWriter, self.directory, first
        )
        self._undone[self._writer.path] = set()
        self._sealed.append(old.path)
        await loop.run_in_executor(self._thread, old.close)

    async def _forget_done_segments(self) -> None:
        # Oldest first: a later segment may hold the DONE records of an earlier one's
        # messages, so it must outlive it.
        loop = asyncio.get_running_loop()
        while self._sealed and not self._undone.get(self._sealed[0]):
            path = self._sealed.pop(0)
            self._undone.pop(path, None)
            await loop.run_in_executor(self._thread, _remove, path)

    # -- delivering --------------------------------------------------------------------------
    async def _deliver(self, group: list[tuple[MsgRef, Envelope, bytes]]) -> None:
        """Have the group delivered (by the agent, else here); DONE for what is done. What the
        agent could not finish is sent again after ``RETRY_SECONDS`` (a store failure)."""
        size = sum(len(message) for _, _, message in group)
        try:
            while group:
                if self._agent is not None:
                    done, queued = await self._agent.deliver([ref for ref, _, _ in group])
                else:
                    result = await self._group.run([(r.seq, e, m) for r, e, m in group])
                    done, queued = result.done, result.queued
                self.deliveries.labels("queued").inc(queued)
                self.deliveries.labels("delivered").inc(len(done) - queued)
                self._done.extend(done)
                self._kick_later()
                finished = set(done)
                group = [item for item in group if item[0].seq not in finished]
                if group and (self._closing or self._agent is None):
                    return  # delivered again from the journal at the next start
                if group:
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            await self._budget.release(size)

    def start(self) -> None:
        """Start the agent, and delivering what a previous run accepted but did not finish."""
        if self._agent is not None:
            self._agent.start()
        if self._recovered:
            self.app.log.event("intake.recover", messages=len(self._recovered))
        self._spawn(self._replay(self._recovered))
        self._recovered = []

    async def _replay(self, pending: list[MsgRef]) -> None:
        loop = asyncio.get_running_loop()
        for ref in pending:  # oldest first; stop() waits for this within its grace
            try:
                payload = await loop.run_in_executor(self._thread, read_payload, ref)
                header, message = split_msg(payload)
                envelope = envelope_from_dict(header)
            except Exception as exc:  # not one of ours: keep the file, say so
                self.app.log.event("intake.error", stage="replay", seq=ref.seq, error=repr(exc))
                continue
            await self._budget.acquire(len(message))
            self.app.log.event("intake.replay", seq=ref.seq, rcpts=len(envelope.recipients))
            self._ready.append((ref, envelope, message))
            self._schedule_deliveries()

    # -- stopping ----------------------------------------------------------------------------
    async def stop(self) -> None:
        self._closing = True
        self._start_deliveries()
        grace = self.app.config.limits.shutdown_grace
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._agent is not None:
            await self._agent.stop()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._kick()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._writer.close)
        self._thread.shutdown(wait=True)
        os.close(self._lock_fd)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


async def start_intake(app: App, agent: bool = True) -> Intake | None:
    """The ``merpati serve`` service: open ``data_dir/intake``, start the delivery agent
    (``agent=False``: deliver in this process), start delivering what a previous run left,
    and set ``app.intake``. Without a queue (failures need one) the SMTP server keeps
    delivering before it answers."""
    if app.queue is None:
        return None
    loop = asyncio.get_running_loop()

    def open_journal() -> Intake:
        claimed = claim(app.config.data_dir)
        try:
            found = scan(claimed.directory)
            writer = SegmentWriter(claimed.directory, found.next_seq)
            pending = sorted(found.pending.values(), key=lambda r: r.seq)
            next_seq = found.next_seq
            if claimed.orphans:  # journals of processes that are gone: ours to deliver now
                adopted = adopt(claimed.orphans, writer, next_seq)
                pending += adopted
                next_seq += len(adopted)
        except BaseException:
            os.close(claimed.lock_fd)
            raise
        client = AgentClient(app, claimed.directory) if agent else None
        return Intake(app, claimed, writer, next_seq, found.segments, pending, client)

    intake = await loop.run_in_executor(None, open_journal)
    app.intake = intake
    intake.start()
    return intake
