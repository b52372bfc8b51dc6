"""The queue as a ``merpati serve`` service: ``start_queue_service(app)`` opens the store in
``data_dir/queue``, starts the runner (a queue run at once, then whenever something is queued
and at least every second), and sets ``app.queue`` to an ``OutboundQueue``.

``QueueService.enqueue`` returns only after the message and its recipient rows are fsynced.
``stop()`` lets attempts in progress finish within ``[limits] shutdown_grace`` and gives back
the rest to the queue unchanged. DKIM signing hooks in through ``merpati.queue.signing``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from merpati.delivery.api import Envelope, Recipient
from merpati.dns.resolver import make_resolver
from merpati.queue.runner import QueueRunner, RunnerDeps
from merpati.queue.store import QueueStore

if TYPE_CHECKING:
    from merpati.app import App

__all__ = ["QueueService", "start_queue_service"]


class QueueService:
    """Implements ``merpati.delivery.api.OutboundQueue`` and ``Service``."""

    def __init__(self, store: QueueStore, runner: QueueRunner, grace: float) -> None:
        self.store = store
        self.runner = runner
        self._grace = grace

    async def enqueue(
        self, envelope: Envelope, message: bytes, recipients: tuple[Recipient, ...]
    ) -> str:
        qid = await self.store.enqueue(envelope, message, recipients)
        self.runner.wake()
        return qid

    def wake(self) -> None:
        self.runner.wake()

    async def stop(self) -> None:
        await self.runner.stop(self._grace)
        await asyncio.to_thread(self.store.close)


def _queued(store: QueueStore) -> float:
    try:
        return float(store.count())
    except Exception:
        return float("nan")


async def start_queue_service(app: App) -> QueueService:
    config = app.config
    store = await asyncio.to_thread(QueueStore.open, config.data_dir)
    tls = app.tls
    attempts = app.metrics.counter(
        "merpati_queue_attempts_total", "Outbound delivery attempts, per recipient", ["result"]
    )
    dsns = app.metrics.counter("merpati_queue_dsns_total", "DSNs generated", ["result"])
    app.metrics.gauge("merpati_queue_messages", "Messages in the outbound queue").set_function(
        lambda: _queued(store)
    )

    def log(name: str, **fields: object) -> None:
        app.log.event(name, **fields)
        if name == "queue.attempt":
            attempts.labels(result=str(fields.get("result", ""))).inc()
        elif name == "queue.dsn":
            dsns.labels(result=str(fields.get("result", ""))).inc()

    deps = RunnerDeps(
        config=config,
        resolver=make_resolver(config),
        is_local=app.accounts.is_local_domain,
        deliver=lambda: app.deliver,
        log=log,
        tls_context=lambda: tls.client_context(verify=False),
    )
    runner = QueueRunner(store, deps)
    service = QueueService(store, runner, config.limits.shutdown_grace)
    app.queue = service
    runner.start()
    return service
