"""Delivering one group of journaled messages: the step the intake journal takes after the
fsync, in the delivery agent's process (``merpati.delivery.agent``) or, for an in-process
server, in its own.

Every message of the group goes through the one ``deliver.many`` (one mail store commit for
the group); recipients that fail there (a mailbox filled up since RCPT, an account removed) are
handed to the outbound queue, which retries local recipients and sends the bounce when it must
(issue 4: "else a bounce"). A message is *done* once every recipient is durable in a mailbox or
in the queue; the intake then writes its ``DONE`` record. A store or queue failure is retried
every ``RETRY_SECONDS`` until it works or the process is stopping; what is not done then is
delivered again from the journal (the delivery keys make that idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from merpati.delivery.api import Envelope

if TYPE_CHECKING:
    from merpati.app import App

T = TypeVar("T")
RETRY_SECONDS = 5.0


@dataclass(slots=True)
class GroupResult:
    done: list[int] = field(default_factory=list)  # seqs now durable in mailboxes or the queue
    queued: int = 0  # of which some recipients went to the queue


class GroupDelivery:
    def __init__(self, app: App, closing: Callable[[], bool]) -> None:
        self.app = app
        self.closing = closing

    async def run(self, group: Sequence[tuple[int, Envelope, bytes]]) -> GroupResult:
        """Deliver ``(seq, envelope, message)`` items; what comes back done needs its DONE."""
        app = self.app
        result = GroupResult()
        items = [(envelope, message) for _, envelope, message in group]
        deliver = _required(app.deliver)
        reports = await self._retry("deliver", group[0][0], lambda: deliver.many(items))
        if reports is None:
            return result  # stopping: delivered again from the journal at the next start
        for (seq, envelope, message), report in zip(group, reports, strict=True):
            failed = tuple(o.recipient for o in report.outcomes if not o.ok)
            if failed:
                if not await self._queue(seq, replace(envelope, recipients=failed), message):
                    return result
                result.queued += 1
            result.done.append(seq)
        return result

    async def _queue(self, seq: int, envelope: Envelope, message: bytes) -> bool:
        """Hand the envelope's recipients (those that failed) to the queue, which retries
        them and bounces if it must; False when stopping first."""
        queue = _required(self.app.queue)
        queued = await self._retry(
            "queue", seq, lambda: queue.enqueue(envelope, message, envelope.recipients)
        )
        if queued is None:
            return False
        queue.wake()
        return True

    async def _retry(self, stage: str, seq: int, attempt: Callable[[], Awaitable[T]]) -> T | None:
        """``attempt()`` until it succeeds, every ``RETRY_SECONDS``; None once stopping."""
        while True:
            try:
                return await attempt()
            except Exception as exc:
                self.app.log.event("intake.error", stage=stage, seq=seq, error=repr(exc))
                if self.closing():
                    return None
                await asyncio.sleep(RETRY_SECONDS)


def _required(value: T | None) -> T:
    if value is None:
        raise RuntimeError("not available (the server is not fully started)")
    return value
