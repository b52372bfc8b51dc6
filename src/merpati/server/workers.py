"""Worker processes: SMTP, IMAP and POP3 on more than one core.

Python runs one thread of Python at a time, so one process serves IMAP from one core; Dovecot
runs a process per connection. With ``workers = N`` (0: one per CPU) ``merpati serve`` starts
N - 1 more processes that serve the ``smtp``, ``submission``, ``submissions``, ``imap``,
``imaps``, ``pop3`` and ``pop3s`` listeners beside it. The main process binds every socket
(before dropping privileges, so ports below 1024 work) and hands those listening sockets to
each worker (``pass_fds``); every process accepts on them, and whichever is free first takes
the connection. A worker serving SMTP has an intake journal of its own (``intake.K``, see
``merpati.delivery.journal.claim``) and its own delivery agent; it writes remote mail into the
queue's store, and the main process's queue runner sends it: the worker wakes it with SIGUSR1
(``QueueWriter.wake``), and it looks at least once a second in any case. The queue runner and
HTTP stay in the main process alone.

What the processes share goes through the data directory, as with two ``merpati serve`` on
one data dir (docs/mailstore.md): the account database, the mail store and its change feed
(IDLE in one process sees what another delivered within its poll interval), the POP3 maildrop
locks; and, through a shared memory board, the open connection counts, so ``[limits]
connections`` and ``connections_per_ip`` hold for the server as a whole
(``merpati.server.board``), the auth failure counts and the ``[policy]`` rate counts
(``merpati.server.sharing``). What each keeps for itself: the auth success cache and caches
of open mailboxes.

A worker exits when the main process goes (it holds the read end of a pipe whose write end only
the main process has: end of file means the main process is gone, even after SIGKILL), so a
restarted server never finds its ports held by orphans. The main process restarts a worker that
dies, at most once a second; SIGHUP (TLS reload) is passed on; on SIGTERM the workers get
SIGTERM and ``[limits] shutdown_grace`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field

from merpati.app import App
from merpati.config import Config

WORKER_LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
SMTP_LISTENERS = ("smtp", "submission", "submissions")
FDS_ENV = "MERPATI_WORKER_FDS"  # {"listeners": {name: [fd, ...]}, "parent": fd}
RESTART_DELAY = 1.0


def serve_command(config: Config, *extra: str) -> list[str]:
    """``merpati serve`` with ``extra`` arguments, for a process of our own."""
    cmd = [sys.executable, "-m", "merpati"]
    if config.source is not None:
        cmd += ["--config", str(config.source)]
    return [*cmd, "serve", *extra]


def worker_count(configured: int) -> int:
    return configured if configured > 0 else (os.cpu_count() or 1)


@dataclass
class WorkerPool:
    app: App
    listeners: dict[str, list[int]]  # listener name -> listening socket descriptors
    count: int  # extra processes
    shared: dict[str, int] = field(default_factory=dict)  # merpati.server.sharing's fds
    procs: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False
    _pipe_w: int = -1
    _pipe_r: int = -1

    async def start(self) -> None:
        self._pipe_r, self._pipe_w = os.pipe()
        os.set_inheritable(self._pipe_r, True)
        for index in range(1, self.count + 1):
            self._tasks.append(asyncio.create_task(self._keep(index)))

    def _command(self, index: int) -> list[str]:
        return serve_command(self.app.config, "--worker", str(index))

    async def _keep(self, index: int) -> None:
        fds = [fd for fds in self.listeners.values() for fd in fds]
        env = dict(os.environ)
        env[FDS_ENV] = json.dumps(
            {"listeners": self.listeners, "parent": self._pipe_r, "shared": self.shared}
        )
        fds += self.shared.values()
        if self.app.config.source is None:
            env.pop("MERPATI_CONFIG", None)  # the embedded default, as the main process
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                *self._command(index), pass_fds=[*fds, self._pipe_r], env=env
            )
            self.procs[index] = proc
            self.app.log.event("worker.started", index=index, pid=proc.pid)
            code = await proc.wait()
            self.procs.pop(index, None)
            if self._stopping:
                return
            self.app.log.event("worker.exited", index=index, pid=proc.pid, status=code)
            await asyncio.sleep(RESTART_DELAY)

    def send(self, sig: int) -> None:
        for proc in list(self.procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def stop(self) -> None:
        self._stopping = True
        procs = list(self.procs.values())
        self.send(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in procs]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.app.config.limits.shutdown_grace + 5)
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            if late:
                await asyncio.wait(late, timeout=5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                os.close(fd)


def inherited() -> tuple[dict[str, list[int]], int, dict[str, int]] | None:
    """In a worker: the listening sockets, the parent pipe and the shared counts
    (``merpati.server.sharing``) handed down, else None."""
    raw = os.environ.get(FDS_ENV)
    if not raw:
        return None
    data = json.loads(raw)
    listeners = {str(k): [int(fd) for fd in v] for k, v in data["listeners"].items()}
    shared = {str(k): int(fd) for k, fd in data.get("shared", {}).items()}
    return listeners, int(data["parent"]), shared
