"""The asyncio transport for IMAP: listener factories for ``imap`` (STARTTLS) and ``imaps``
(implicit TLS), and the per-connection loop around the sans-I/O ``Session``.

The loop reads, feeds the session, writes what it returns (with backpressure: the session hands
output over through ``sink``, which drains), upgrades to TLS when the session asks, and applies
the timeouts: ``imap_preauth_timeout`` before login, ``imap_idle_timeout`` after (rfc9051:5.4,
at least 30 minutes). During IDLE it also waits on the mail store's ``wait_for_change`` so a
change made elsewhere reaches the client at once. On server shutdown, sessions get ``* BYE``.

Invariant: nothing here parses IMAP; nothing in the session touches the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from merpati.app import App
from merpati.imap.searchcache import SearchFieldCache
from merpati.imap.session import Session, SessionConfig, State
from merpati.mailstore.api import MailStoreError
from merpati.server.connection import Connection
from merpati.server.registry import ListenerSpec

READ_CHUNK = 64 * 1024
IDLE_POLL = 30.0  # re-arm wait_for_change at least this often (it also wakes on changes)

BUSY_REPLY = b"* BYE Too many connections, try again later\r\n"
# Casefolded search header values shared by all sessions of this process (searchcache.py):
# at most 500,000 values, about 200 bytes each (100 MB) when full.
FIELD_CACHE = SearchFieldCache(500_000)


def imap_listener(app: App) -> ListenerSpec:
    return ListenerSpec(
        handler=lambda conn: serve(app, conn), tls="starttls", busy_reply=BUSY_REPLY
    )


def imaps_listener(app: App) -> ListenerSpec:
    return ListenerSpec(
        handler=lambda conn: serve(app, conn), tls="implicit", busy_reply=BUSY_REPLY
    )


def session_config(app: App, starttls_available: bool) -> SessionConfig:
    cfg = app.config
    return SessionConfig(
        hostname=cfg.hostname,
        max_line=cfg.limits.imap_line_length,
        max_literal=cfg.limits.imap_literal_size,
        bad_commands=cfg.limits.bad_commands,
        allow_plaintext_auth=cfg.tls.allow_plaintext_auth,
        starttls_available=starttls_available,
    )


async def serve(app: App, conn: Connection) -> None:
    limits = app.config.limits
    writer = conn.writer

    async def sink(data: bytes) -> None:
        if session.want_starttls:
            # Stop reading before the client can see "OK Begin TLS": its ClientHello must
            # reach the TLS layer, not the plaintext stream buffer (uvloop's start_tls lost it
            # about one time in five without this).
            conn.pause_reading()
        writer.write(data)
        await writer.drain()

    async def verify(user: str, password: str) -> str | None:
        return await app.auth.verify(user, password, conn.peer_ip)

    commands = app.metrics.counter(
        "merpati_imap_commands_total", "IMAP commands by name and status", ["command", "status"]
    )
    logins = app.metrics.counter("merpati_imap_logins_total", "IMAP logins", ["result"])

    def log(event: str, **fields: object) -> None:
        if event == "imap.auth":
            logins.labels(str(fields.get("result"))).inc()
        app.log.event(event, id=conn.id, peer=conn.peer_ip, **fields)

    def count(command: str, status: str) -> None:
        commands.labels(command, status).inc()

    session = Session(
        session_config(app, conn.tls_context is not None),
        verify,
        app.mailstore.mailbox,
        sink,
        tls_active=conn.tls_active,
        log=log,
        count=count,
        gather=asyncio.gather,
        field_cache=FIELD_CACHE,
    )
    started = time.monotonic()
    result = "closed"
    try:
        await session.start()
        while not session.closed:
            if session.state is State.NOT_AUTHENTICATED:
                timeout = limits.imap_preauth_timeout
            else:
                timeout = limits.imap_idle_timeout
            if session.idle_tag is not None:
                data = await _idle_read(app, conn, session, timeout)
            else:
                data = await _read(app, conn, timeout)
            if data is None:
                await session.bye("Server shutting down")
                result = "shutdown"
                break
            if not data:
                result = "eof"
                break
            await session.receive(data)
            if session.want_starttls:
                await conn.start_tls()
                session.tls_started()
        else:
            result = "logout"
    except TimeoutError:
        result = "timeout"
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(session.bye("Autologout; idle for too long"), 5)
    except (ConnectionError, ssl.SSLError, OSError):
        result = "reset"
    finally:
        log(
            "imap.session",
            account=session.account or "-",
            tls=conn.tls_version or "-",
            result=result,
            seconds=round(time.monotonic() - started, 3),
        )


async def _read(app: App, conn: Connection, timeout: float) -> bytes | None:
    """Bytes from the client ("" at EOF), None when the server is stopping; TimeoutError."""
    if app.stopping.is_set():
        return None
    read = asyncio.ensure_future(conn.reader.read(READ_CHUNK))
    stop = asyncio.ensure_future(app.stopping.wait())
    try:
        done, _ = await asyncio.wait({read, stop}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        stop.cancel()
    if read in done:
        return read.result()
    read.cancel()
    if stop in done:
        return None
    raise TimeoutError


async def _idle_read(app: App, conn: Connection, session: Session, timeout: float) -> bytes | None:
    """Like ``_read``, but while waiting also sends the selected mailbox's changes (rfc2177)."""
    deadline = time.monotonic() + timeout
    read = asyncio.ensure_future(conn.reader.read(READ_CHUNK))
    stop = asyncio.ensure_future(app.stopping.wait())
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            view, box = session.view, session.mailbox
            waiters = {read, stop}
            change: asyncio.Future[int] | None = None
            if view is not None and box is not None:
                change = asyncio.ensure_future(
                    box.wait_for_change(view.folder, view.highestmodseq, min(remaining, IDLE_POLL))
                )
                waiters.add(change)
            done, _ = await asyncio.wait(waiters, timeout=remaining, return_when="FIRST_COMPLETED")
            if change is not None and change not in done:
                change.cancel()
            if read in done:
                return read.result()
            if stop in done:
                return None
            if change is not None and change in done:
                exc = change.exception()
                if exc is not None and not isinstance(exc, MailStoreError):
                    raise exc
                await session.idle_poll()
    finally:
        stop.cancel()
        if not read.done():
            read.cancel()
