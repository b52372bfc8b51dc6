"""``merpati serve``: build the shared services, bind every listener, run until a signal.

Order at start: open the stores and TLS (first start: self-signed certificate; on the embedded
default with no accounts, ``postmaster@localhost``), start background services (the queue),
bind all listeners (any failure: one line, exit 1, nothing left half-started), drop privileges
if started as root with ``user`` set, then accept. SIGTERM/SIGINT: stop accepting, let live
sessions finish for ``[limits] shutdown_grace``, stop services, exit 0. SIGHUP: reload the TLS
certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

from merpati.accounts.store import AccountStore
from merpati.app import App
from merpati.auth.credentials import Authenticator
from merpati.auth.passwords import generate_password
from merpati.clientsettings import client_settings
from merpati.config import Config
from merpati.delivery.deliver import make_deliverer
from merpati.errors import OperationalError
from merpati.logging import EventLog
from merpati.metrics import Metrics
from merpati.server import registry
from merpati.server.listeners import Acceptor
from merpati.server.sharing import SharedCounts
from merpati.server.workers import (
    SMTP_LISTENERS,
    WORKER_LISTENERS,
    WorkerPool,
    inherited,
    worker_count,
)
from merpati.tls import TLSManager


def raise_file_limit() -> None:
    """Every connection is a descriptor and every open account up to six: raise the soft
    limit to the hard one (systemd's unit sets LimitNOFILE=65536)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_app(config: Config) -> App:
    from merpati.mailstore import open_mailstore

    try:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise OperationalError(f"cannot create data directory {config.data_dir}: {exc}") from None
    accounts = AccountStore.open(config.data_dir)
    auth = Authenticator(accounts, free_failures=config.limits.auth_failures)
    mailstore = open_mailstore(config, accounts.quota)
    return App(
        config=config,
        accounts=accounts,
        auth=auth,
        mailstore=mailstore,
        tls=TLSManager(config),
        metrics=Metrics(),
        log=EventLog(),
    )


async def bootstrap_first_start(app: App) -> None:
    """Embedded default, no accounts: create postmaster@localhost and print its settings."""
    if not app.config.embedded or app.accounts.count_accounts():
        return
    if not app.accounts.is_local_domain("localhost"):
        app.accounts.add_domain("localhost")
    password = generate_password()
    account = app.accounts.add_account("postmaster@localhost", password)
    await app.mailstore.create_account(account.address)
    print(
        "Merpati first start: created the account postmaster@localhost\n"
        f"  password: {password}   (shown once; change it with: merpati user passwd "
        "postmaster@localhost)\n\n" + client_settings(app.config, account.address) + "\n",
        flush=True,
    )


def drop_privileges(app: App) -> None:
    """Hand the data directory to the configured user and become it (when run as root)."""
    pw = _configured_user(app)
    if pw is None:
        return
    for root, dirs, files in os.walk(app.config.data_dir):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            if os.lstat(path).st_uid != pw.pw_uid:
                os.lchown(path, pw.pw_uid, pw.pw_gid)
    os.chown(app.config.data_dir, pw.pw_uid, pw.pw_gid)
    switch_user(app)


def switch_user(app: App) -> None:
    """Become the configured user (when run as root); for processes of our own, started once
    ``drop_privileges`` has handed the data directory over."""
    pw = _configured_user(app)
    if pw is None:
        return
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    app.log.event("server.privileges", user=pw.pw_name, uid=pw.pw_uid)


def _configured_user(app: App) -> pwd.struct_passwd | None:
    user = app.config.user
    if not user or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise OperationalError(f"config key 'user': no such user {user!r}") from None


async def _start_services(app: App) -> list[registry.Service]:
    services: list[registry.Service] = []
    for path in registry.SERVICE_FACTORIES:
        start = cast(Callable[[App], Awaitable[registry.Service | None]], registry.resolve(path))
        service = await start(app)
        if service is not None:  # a service may decline (the intake without a queue)
            services.append(service)
    return services


async def serve(config: Config) -> int:
    raise_file_limit()
    app = build_app(config)
    acceptor = Acceptor(app)
    services: list[registry.Service] = []
    pool: WorkerPool | None = None
    try:
        await bootstrap_first_start(app)
        app.deliver = make_deliverer(app)
        services = await _start_services(app)
        for name, path in registry.LISTENER_FACTORIES.items():
            addresses = getattr(config.listen, name)
            if not addresses:
                continue
            spec = cast(registry.ListenerSpec, registry.resolve(path)(app))
            await acceptor.bind(name, spec, addresses)
        drop_privileges(app)
        app.serving.set()
        count = worker_count(config.workers)
        if count > 1 and (fds := acceptor.descriptors(WORKER_LISTENERS)):
            # A worker that queued remote mail says so with SIGUSR1 (before any worker runs:
            # the signal's default action would end this process).
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, partial(_wake_queue, app))
            shared = SharedCounts.create(count)
            shared.install(app, acceptor)
            pool = WorkerPool(app, fds, count - 1, shared.fds())
            await pool.start()
    except BaseException:
        acceptor.stop_accepting()
        for s in services:
            await s.stop()
        await app.mailstore.close()
        raise

    def on_hup() -> None:
        _reload_tls(app)
        if pool is not None:
            pool.send(signal.SIGHUP)

    stop = _stop_on_signals(on_hup)
    listening = " ".join(f"{n}={h}:{p}" for n, addrs in acceptor.bound.items() for h, p in addrs)
    app.log.event("server.ready", hostname=config.hostname, data_dir=str(config.data_dir))
    print(f"merpati: listening {listening}", file=sys.stderr, flush=True)
    await stop.wait()

    app.log.event("server.stopping", sessions=len(acceptor.tasks))
    await _shut_down(app, acceptor, list(reversed(services)), alongside=pool)
    app.log.event("server.stopped")
    return 0


def _wake_queue(app: App) -> None:
    if app.queue is not None:
        app.queue.wake()


def _stop_on_signals(on_hup: Callable[[], None]) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT; SIGHUP calls ``on_hup``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    return stop


def _reload_tls(app: App) -> None:
    try:
        app.tls.reload()
        app.log.event("tls.reloaded", cert=str(app.tls.cert_path))
    except OperationalError as exc:
        app.log.event("tls.reload_failed", error=str(exc))


async def _shut_down(
    app: App,
    acceptor: Acceptor,
    services: list[registry.Service],
    alongside: registry.Service | None = None,
) -> None:
    """Stop accepting; live sessions get ``shutdown_grace`` while ``alongside`` (the worker
    pool) stops side by side with them; then ``services`` stop in order; then the stores
    close."""
    app.stopping.set()
    acceptor.stop_accepting()
    first = asyncio.create_task(alongside.stop()) if alongside is not None else None
    await acceptor.drain(app.config.limits.shutdown_grace)
    if first is not None:
        with contextlib.suppress(Exception):
            await first
    for service in services:
        with contextlib.suppress(Exception):
            await service.stop()
    await app.mailstore.close()
    app.accounts.close()


async def serve_worker(config: Config, index: int) -> int:
    """One worker process of ``merpati serve`` (merpati.server.workers): SMTP, IMAP and POP3 on
    the listening sockets the main process handed down, until SIGTERM or the main process
    ends."""
    handed = inherited()
    if handed is None:
        raise OperationalError("serve --worker is started by merpati serve itself")
    listeners, parent, shared = handed
    raise_file_limit()
    app = build_app(config)
    acceptor = Acceptor(app)
    acceptor.id_prefix = f"w{index}."
    if shared:
        SharedCounts.attach(shared, index, worker_count(config.workers)).install(app, acceptor)
    # Before the first connection: SMTP answers from the journal only once it is open.
    services = await _smtp_services(app) if set(listeners) & set(SMTP_LISTENERS) else []
    for name, fds in listeners.items():
        spec = cast(registry.ListenerSpec, registry.resolve(registry.LISTENER_FACTORIES[name])(app))
        socks = [socket.socket(fileno=fd) for fd in fds]
        await acceptor.adopt(name, spec, socks)
    loop = asyncio.get_running_loop()
    stop = _stop_on_signals(lambda: _reload_tls(app))

    def parent_gone() -> None:  # end of file: the main process has exited, however it did
        with contextlib.suppress(OSError):
            if os.read(parent, 1):
                return
        loop.remove_reader(parent)
        stop.set()

    loop.add_reader(parent, parent_gone)
    app.serving.set()
    app.log.event("worker.ready", index=index, pid=os.getpid())
    await stop.wait()
    await _shut_down(app, acceptor, services)
    app.log.event("worker.stopped", index=index)
    return 0


async def _smtp_services(app: App) -> list[registry.Service]:
    """What SMTP needs in a worker: a journal of its own with its own delivery agent, and the
    queue's store for remote recipients (the main process's runner sends them)."""
    from merpati.delivery.agent import QueueWriter
    from merpati.delivery.intake import start_intake

    queue = QueueWriter(app.config.data_dir, notify=os.getppid())  # the main process
    app.queue = queue
    app.deliver = make_deliverer(app)
    intake = await start_intake(app)
    return [intake, queue] if intake is not None else [queue]


def run_worker(config: Config, index: int) -> int:
    return asyncio.run(serve_worker(config, index))


def run(config: Config) -> int:
    # The stdlib event loop, not uvloop: uvloop's start_tls can lose the client's ClientHello
    # when a stream is upgraded (STARTTLS/STLS hung in about 1 in 10 handshakes here;
    # MagicStack/uvloop#707). docs/design.md has the measurement.
    return asyncio.run(serve(config))
