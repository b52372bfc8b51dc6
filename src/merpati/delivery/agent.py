"""The delivery agent: a process of its own that puts journaled messages into the mailboxes.

Why a process: Python runs one thread of Python at a time. Delivering in worker threads of
the SMTP process (scanning each message's MIME structure, writing files, committing indexes)
held that lock so often that every system call of the event loop thread (``send``, ``recv``,
``stat``) waited about 30 µs to get it back, several times per message; the SMTP sessions, not
the disks, set the pace (docs/smtp.md, "Delivery agent", has the measurements). Postfix
separates ``smtpd`` from its delivery agents for the same reason: intake stays fast while
delivery runs beside it, on another core.

``merpati serve`` starts one agent (``merpati serve --delivery-agent``, not for operators) once
it has bound its sockets and dropped privileges, with one end of a socket pair. The intake
sends each group of journaled messages as references (segment, offset, length of each record)
in one JSON line; the agent reads the records from the journal, delivers them through the one
``deliver.many`` (``merpati.delivery.group``), hands failed recipients to the outbound queue,
and answers with the seqs that are done, and whether anything went into the outbound queue
(the intake then wakes the queue runner). The intake writes their ``DONE`` records.

If the agent dies, the intake starts another (at most once a second) and sends it every group
not yet answered. If it hangs instead (a stuck disk or lock, a stopped process), it answers
nothing while groups wait: after ``[limits] delivery_stall`` of that the intake kills it, and
the same restart follows. A message delivered just before the death is recognised by its
delivery key and not stored twice. The agent exits when its socket ends (the main process
stopped, or was killed): it finishes the groups it has, so nothing is left half-done for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from merpati.delivery.api import Envelope, Recipient
from merpati.delivery.codec import envelope_from_dict
from merpati.delivery.group import GroupDelivery
from merpati.delivery.journal import MsgRef, read_payload, split_msg
from merpati.server.workers import serve_command

if TYPE_CHECKING:
    from merpati.app import App
    from merpati.config import Config

AGENT_FD_ENV = "MERPATI_AGENT_FD"
AGENT_JOURNAL_ENV = "MERPATI_AGENT_JOURNAL"  # the intake journal directory it reads
RESTART_DELAY = 1.0
LINE_LIMIT = 64 * 1024 * 1024  # a group of references is far smaller


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def _messages(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    """The JSON lines the other side sends, until its socket ends."""
    while True:
        try:
            line = await reader.readline()
        except (OSError, ValueError):
            return
        if not line:
            return
        yield json.loads(line)


@dataclass
class AgentClient:
    """The intake's side: ``deliver(refs)`` returns the seqs the agent delivered."""

    app: App
    directory: Path  # the journal
    _pending: dict[int, tuple[list[MsgRef], asyncio.Future[dict[str, Any]]]] = field(
        default_factory=dict
    )
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _writer: asyncio.StreamWriter | None = None
    _proc: asyncio.subprocess.Process | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    # When the agent last showed progress: an answer, its start, or work arriving while it
    # had none. The watchdog measures a stall from here.
    _progress: float = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def deliver(self, refs: list[MsgRef]) -> tuple[list[int], int]:
        """Seqs of ``refs`` now durable in their mailboxes or the queue, and how many of
        them needed the queue."""
        gid = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self._pending:  # an idle agent is not a stalled one
            self._progress = loop.time()
        self._pending[gid] = (refs, future)
        try:
            if self._writer is not None:
                self._send(self._writer, gid, refs)
            answer = await future
        finally:
            self._pending.pop(gid, None)
        return [int(s) for s in answer["done"]], int(answer.get("queued", 0))

    def _send(self, writer: asyncio.StreamWriter, gid: int, refs: list[MsgRef]) -> None:
        rows = [[r.seq, r.segment.name, r.offset, r.length] for r in refs]
        writer.write(_encode({"g": gid, "refs": rows}))

    async def _keep(self) -> None:
        """Run the agent, and another when it dies, until stopped."""
        await self.app.serving.wait()  # after the privilege drop: the agent runs as the user
        while not self._stopping:
            ours, theirs = socket.socketpair()
            try:
                env = dict(os.environ)
                env[AGENT_FD_ENV] = str(theirs.fileno())
                env[AGENT_JOURNAL_ENV] = str(self.directory)
                if self.app.config.source is None:
                    env.pop("MERPATI_CONFIG", None)  # the embedded default, as ours
                self._proc = await asyncio.create_subprocess_exec(
                    *serve_command(self.app.config, "--delivery-agent"),
                    pass_fds=[theirs.fileno()],
                    env=env,
                )
            except OSError as exc:
                ours.close()
                theirs.close()
                self.app.log.event("agent.error", error=str(exc))
                await asyncio.sleep(RESTART_DELAY)
                continue
            theirs.close()
            self.app.log.event("agent.started", pid=self._proc.pid)
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=LINE_LIMIT)
            self._writer = writer
            self._progress = asyncio.get_running_loop().time()
            for gid, (refs, _) in list(self._pending.items()):  # unanswered by the last one
                self._send(writer, gid, refs)
            watchdog = asyncio.get_running_loop().create_task(self._watch(self._proc))
            try:
                await self._read(reader)
            finally:
                watchdog.cancel()
            self._writer = None
            writer.close()
            code = await self._proc.wait()
            if self._stopping:
                return
            self.app.log.event("agent.exited", pid=self._proc.pid, status=code)
            await asyncio.sleep(RESTART_DELAY)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Kill an agent that has had groups to deliver and answered none of them for
        ``[limits] delivery_stall``; ``_keep`` then starts another and sends it those groups
        again (their delivery keys keep anything it did finish from being stored twice)."""
        stall = self.app.config.limits.delivery_stall
        if stall <= 0:
            return
        loop = asyncio.get_running_loop()
        while proc.returncode is None:
            await asyncio.sleep(min(stall / 4, 5.0))
            idle = loop.time() - self._progress
            if self._pending and idle > stall:
                self.app.log.event(
                    "agent.stalled", pid=proc.pid, groups=len(self._pending), seconds=round(idle)
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # SIGKILL: also ends a stopped process
                return

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        async for answer in _messages(reader):
            self._progress = loop.time()
            entry = self._pending.get(int(answer["g"]))
            if entry is not None and not entry[1].done():
                entry[1].set_result(answer)
            if answer.get("queued") or answer.get("wake"):
                queue = self.app.queue
                if queue is not None:
                    queue.wake()

    async def stop(self) -> None:
        """Close the agent's socket: it finishes what it has and exits."""
        self._stopping = True
        if self._writer is not None:
            self._writer.close()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), self.app.config.limits.shutdown_grace + 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# -- the agent process -----------------------------------------------------------------------


class QueueWriter:
    """``OutboundQueue`` for the agent and for worker processes: writes to the queue's store;
    the main process's queue runner sends. The agent's answers tell its intake to wake the
    runner; a worker's ``wake`` sends the main process (``notify``) SIGUSR1, and the runner
    also looks by itself at least once a second."""

    def __init__(self, data_dir: Path, notify: int | None = None) -> None:
        from merpati.queue.store import QueueStore

        self.store = QueueStore.open(data_dir)
        self._notify = notify
        self.woken = False  # the agent passes this on in its next answer, then clears it

    async def enqueue(
        self, envelope: Envelope, message: bytes, recipients: tuple[Recipient, ...]
    ) -> str:
        return await self.store.enqueue(envelope, message, recipients)

    def wake(self) -> None:
        self.woken = True
        # Only while that process is still our parent: once it is gone, its pid may be another
        # process's (a worker outliving the main process exits at once anyway).
        if self._notify is not None and os.getppid() == self._notify:
            with contextlib.suppress(OSError):
                os.kill(self._notify, signal.SIGUSR1)

    async def stop(self) -> None:
        await asyncio.to_thread(self.store.close)


async def serve_agent(config: Config) -> int:
    from merpati.delivery.deliver import make_deliverer
    from merpati.server.runtime import build_app, switch_user

    raw = os.environ.get(AGENT_FD_ENV)
    if not raw:
        from merpati.errors import OperationalError

        raise OperationalError("serve --delivery-agent is started by merpati serve itself")
    sock = socket.socket(fileno=int(raw))
    # A SIGTERM or Ctrl-C meant for the server (systemd signals every process of the unit)
    # must not cut a delivery short: the agent ends when the main process closes its socket.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = build_app(config)
    switch_user(app)
    queue = QueueWriter(config.data_dir)
    app.queue = queue
    app.deliver = make_deliverer(app)
    journal = Path(os.environ.get(AGENT_JOURNAL_ENV) or config.data_dir / "intake")
    closing = False
    group = GroupDelivery(app, lambda: closing)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(gid: int, rows: list[list[Any]]) -> None:
        refs = [
            MsgRef(int(seq), journal / Path(str(name)).name, int(offset), int(length))
            for seq, name, offset, length in rows
        ]
        items: list[tuple[int, Envelope, bytes]] = []
        for ref, payload in zip(refs, await asyncio.to_thread(_read_all, refs), strict=True):
            try:
                if isinstance(payload, Exception):
                    raise payload
                header, message = split_msg(payload)
                items.append((ref.seq, envelope_from_dict(header), message))
            except Exception as exc:  # not one of ours: the main process keeps the record
                app.log.event("intake.error", stage="agent-read", seq=ref.seq, error=repr(exc))
        done: list[int] = []
        queued = 0
        try:
            if items:
                result = await group.run(items)
                done, queued = result.done, result.queued
        except Exception as exc:  # what is not done is sent again by the intake
            app.log.event("intake.error", stage="agent", error=repr(exc))
        wake, queue.woken = queue.woken, False  # remote recipients went to the queue
        writer.write(_encode({"g": gid, "done": done, "queued": queued, "wake": wake}))

    async for request in _messages(reader):
        task = asyncio.get_running_loop().create_task(handle(int(request["g"]), request["refs"]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    closing = True  # the main process is gone or stopping: finish what we have, then exit
    if tasks:
        await asyncio.wait(list(tasks), timeout=config.limits.shutdown_grace)
    with contextlib.suppress(Exception):
        writer.close()
    await app.mailstore.close()
    await queue.stop()
    app.accounts.close()
    return 0


def _read_all(refs: list[MsgRef]) -> list[bytes | Exception]:
    """The records of a group, read in one worker call (a thread hop each cost more)."""
    out: list[bytes | Exception] = []
    for ref in refs:
        try:
            out.append(read_payload(ref))
        except Exception as exc:
            out.append(exc)
    return out


def run_agent(config: Config) -> int:
    return asyncio.run(serve_agent(config))
