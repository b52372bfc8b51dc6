"""POP3 transport: runs ``Pop3Session`` over a ``Connection`` for the pop3 and pop3s listeners.

Does: feed bytes to the sans-I/O session and carry out its actions (password checks through
the shared throttle, the maildrop lock and INBOX snapshot, reading messages, \\Seen after RETR,
STLS, the UPDATE-state expunge), the idle timeout, and logging.
Does not: parse or format anything itself (``session``/``replies`` do).

Invariants:
- Nothing is deleted unless the client sent QUIT in the TRANSACTION state; a dropped or
  timed-out connection leaves the INBOX as it was (apart from \\Seen set by RETR).
- The maildrop lock is held from login to the end of the session, and always released.
- Exception text never reaches the client; an internal failure ends the session with
  ``-ERR [SYS/TEMP]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
import weakref
from typing import TYPE_CHECKING, Any

from merpati.mailstore.api import FlagMode, Mailbox, MailStoreError, NoSuchMessage
from merpati.pop3.actions import (
    NEED_DATA,
    Close,
    Commit,
    FetchMessage,
    MarkSeen,
    OpenMaildrop,
    Send,
    StartTLS,
    Verify,
)
from merpati.pop3.lock import MaildropLock, MaildropLocks
from merpati.pop3.replies import RespCode, err
from merpati.pop3.session import Pop3Session
from merpati.server.connection import Connection
from merpati.server.registry import ListenerSpec

if TYPE_CHECKING:
    from merpati.app import App

__all__ = ["BUSY_REPLY", "pop3_listener", "pop3s_listener", "serve_pop3"]

BUSY_REPLY = b"-ERR [SYS/TEMP] too many connections\r\n"
INBOX = "INBOX"
READ_SIZE = 64 * 1024
# Replies are gathered and written together; past this many bytes they are written at once.
WRITE_HIGH_WATER = 256 * 1024
# RETR read-ahead: at most this many following messages, of at most this many bytes together.
READ_AHEAD_COUNT = 8
READ_AHEAD_BYTES = 1024 * 1024


class _Shared:
    """What the sessions of one server share: the maildrop locks and the last login time of
    each account (for LOGIN-DELAY; in this process only)."""

    def __init__(self, app: App) -> None:
        self.locks = MaildropLocks(app.config.data_dir / "pop3-locks")
        self.last_login: dict[str, float] = {}

    def too_soon(self, account: str, delay: float) -> bool:
        """True if ``account`` logged in less than ``delay`` seconds ago; else note now."""
        now = time.monotonic()
        if delay > 0:
            last = self.last_login.get(account)
            if last is not None and now - last < delay:
                return True
            if len(self.last_login) > 100_000:
                self.last_login = {a: t for a, t in self.last_login.items() if now - t < delay}
            self.last_login[account] = now
        return False


_SHARED: weakref.WeakKeyDictionary[App, _Shared] = weakref.WeakKeyDictionary()


def _shared(app: App) -> _Shared:
    shared = _SHARED.get(app)
    if shared is None:
        shared = _SHARED[app] = _Shared(app)
    return shared


def pop3_listener(app: App) -> ListenerSpec:
    """Port 110 (2110 by default): plaintext with STLS, credentials only after it."""

    async def handler(conn: Connection) -> None:
        await serve_pop3(app, conn)

    return ListenerSpec(handler=handler, tls="starttls", busy_reply=BUSY_REPLY)


def pop3s_listener(app: App) -> ListenerSpec:
    """Port 995 (2995 by default): implicit TLS (rfc8314:3.3)."""

    async def handler(conn: Connection) -> None:
        await serve_pop3(app, conn)

    return ListenerSpec(handler=handler, tls="implicit", busy_reply=BUSY_REPLY)


class _Run:
    """The transport's side of one session: the store handles and the lock."""

    def __init__(self, app: App, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        self.lock: MaildropLock | None = None
        self.mailbox: Mailbox | None = None
        self.account: str | None = None
        self.retrieved = 0
        self.deleted = 0
        self.out: list[bytes] = []
        self.out_size = 0
        self.seen: list[int] = []
        self.stop_wait: asyncio.Future[Any] | None = None
        self.ahead: dict[int, tuple[asyncio.Future[bytes], int]] = {}  # uid -> (read, size)
        self.ahead_bytes = 0

    def box(self) -> Mailbox:
        if self.mailbox is None:
            raise RuntimeError("no maildrop open")
        return self.mailbox

    async def open(self, session: Pop3Session, account: str) -> None:
        shared = _shared(self.app)
        try:
            lock = shared.locks.acquire(account)
        except OSError:
            session.maildrop_failed()
            return
        if lock is None:
            session.maildrop_in_use()
            return
        if shared.too_soon(account, self.app.config.limits.pop3_login_delay):
            lock.release()
            session.maildrop_too_soon()
            return
        try:
            mailbox = self.app.mailstore.mailbox(account)
            messages = await mailbox.messages(INBOX)
        except MailStoreError:
            lock.release()
            session.maildrop_failed()
            return
        except BaseException:
            lock.release()
            raise
        self.lock, self.mailbox, self.account = lock, mailbox, account
        session.maildrop_opened(account, messages)

    async def fetch(self, session: Pop3Session, action: FetchMessage) -> None:
        box = self.box()
        pending = self.ahead.pop(action.uid, None)
        if pending is not None:
            self.ahead_bytes -= pending[1]
        if any(uid < action.uid for uid in self.ahead):
            self.drop_read_ahead()  # the client skipped around: read-ahead is no use
        if action.whole and session.maildrop is not None:
            # Clients RETR in order: start reading the next few messages now, so the store's
            # reads overlap with sending this one (bounded in count and bytes).
            for info in session.maildrop.after(action.number, READ_AHEAD_COUNT):
                if info.uid in self.ahead:
                    continue
                if (
                    len(self.ahead) >= READ_AHEAD_COUNT
                    or self.ahead_bytes + info.size > READ_AHEAD_BYTES
                ):
                    break
                future = asyncio.ensure_future(box.read(INBOX, info.uid))
                self.ahead[info.uid] = (future, info.size)
                self.ahead_bytes += info.size
        try:
            data: bytes | None = await (pending[0] if pending else box.read(INBOX, action.uid))
        except NoSuchMessage:
            data = None
        except MailStoreError as exc:
            self.app.log.event("pop3.read_failed", account=self.account, uid=action.uid, error=exc)
            session.message_unreadable()
            return
        session.message_fetched(data)
        if data is not None and action.whole:
            self.retrieved += 1

    def drop_read_ahead(self) -> None:
        for fut, _ in self.ahead.values():
            fut.cancel()
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved, so that asyncio does not report it
        self.ahead.clear()
        self.ahead_bytes = 0

    async def read(self, timeout: float) -> bytes | None:
        """The next bytes from the client (b"" at hang-up), or None when the idle timeout
        passes or the server begins to stop first."""
        stop_wait = self.stop_wait
        if stop_wait is None:
            stop_wait = self.stop_wait = asyncio.ensure_future(self.app.stopping.wait())
        if stop_wait.done():
            return None
        reading = asyncio.ensure_future(self.conn.reader.read(READ_SIZE))
        waiters: list[asyncio.Future[Any]] = [reading, stop_wait]
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if reading in done:
            return reading.result()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        return None

    def send(self, data: bytes) -> bool:
        """Queue reply bytes; True when enough is queued to be worth a write now."""
        self.out.append(data)
        self.out_size += len(data)
        return self.out_size >= WRITE_HIGH_WATER

    async def flush(self) -> None:
        """Write the queued replies in one piece and wait for the socket to take them."""
        if self.out:
            data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
            self.out.clear()
            self.out_size = 0
            self.conn.writer.write(data)
        # A client that stops reading is dropped after the idle timeout (TimeoutError is an
        # OSError: the session ends as "connection lost", deleting nothing).
        await asyncio.wait_for(self.conn.writer.drain(), self.app.config.limits.pop3_idle_timeout)

    async def flush_seen(self) -> None:
        """Set \\Seen on everything retrieved since the last flush, in one store call (one
        durable write for a pipelined batch of RETRs, not one per message)."""
        if not self.seen or self.mailbox is None:
            return
        uids, self.seen = self.seen, []
        try:
            await self.mailbox.store_flags(INBOX, uids, FlagMode.ADD, ["\\Seen"])
        except MailStoreError:
            pass  # messages expunged through IMAP meanwhile

    async def commit(self, session: Pop3Session, uids: tuple[int, ...]) -> None:
        box = self.box()

        async def update() -> int:
            # rfc1939:6 UPDATE: remove exactly the messages this session marked.
            await box.store_flags(INBOX, uids, FlagMode.ADD, ["\\Deleted"])
            await box.expunge(INBOX, uids)
            # Gone is gone: a message expunged meanwhile through IMAP counts as removed.
            remaining = {m.uid for m in await box.messages(INBOX)}
            return len(set(uids) - remaining)

        try:
            # Shielded: once started, a vanished client or a shutdown does not cut it short.
            removed = await asyncio.shield(update())
        except MailStoreError:
            session.commit_failed()
            return
        self.deleted = removed
        session.committed(removed)

    async def start_tls(self, session: Pop3Session) -> None:
        conn = self.conn
        conn.pause_reading()  # before "+OK": the ClientHello must wait in the kernel
        await self.flush()
        try:  # start_tls drops what the client pipelined in the clear (rfc2595:4)
            await conn.start_tls()
        except (ssl.SSLError, OSError, TimeoutError, RuntimeError):
            session.tls_failed()
            return
        session.tls_started()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


async def serve_pop3(app: App, conn: Connection) -> None:
    """Run one POP3 session on ``conn`` until QUIT, a timeout, an error or a hang-up."""
    cfg = app.config
    session = Pop3Session(
        hostname=cfg.hostname,
        tls_active=conn.tls_active,
        tls_available=conn.tls_context is not None,
        allow_plaintext_auth=cfg.tls.allow_plaintext_auth,
        max_errors=cfg.limits.bad_commands,
        login_delay=math.ceil(cfg.limits.pop3_login_delay),
    )
    run = _Run(app, conn)
    result = "disconnected"
    try:
        run.send(session.greeting())
        while True:
            action = session.next_action()
            if action is NEED_DATA:
                # Nothing more to do until the client speaks: answer everything so far.
                await run.flush()
                await run.flush_seen()
                data = await run.read(cfg.limits.pop3_idle_timeout)
                if data is None:
                    if app.stopping.is_set():
                        session.shutting_down()
                    else:
                        session.timed_out()
                    continue
                if not data:
                    break  # hang-up: nothing is deleted
                session.receive(data)
            elif isinstance(action, Send):
                if run.send(action.data):
                    await run.flush()
            elif isinstance(action, Verify):
                account = await app.auth.verify(action.username, action.password, conn.peer_ip)
                session.verified(account)
            elif isinstance(action, OpenMaildrop):
                await run.open(session, action.account)
            elif isinstance(action, FetchMessage):
                await run.fetch(session, action)
            elif isinstance(action, MarkSeen):
                run.seen.append(action.uid)
            elif isinstance(action, StartTLS):
                await run.start_tls(session)
            elif isinstance(action, Commit):
                await run.flush_seen()
                await run.commit(session, action.uids)
            elif isinstance(action, Close):
                result = action.reason
                await run.flush()
                break
    except (ConnectionError, ssl.SSLError, OSError):
        result = "connection lost"
    except Exception as exc:  # never crash the server or show exception text
        result = f"internal error: {type(exc).__name__}"
        app.log.event("pop3.error", peer=conn.peer_ip, error=repr(exc))
        try:
            run.send(err("internal server error", RespCode.SYS_TEMP))
            await asyncio.wait_for(run.flush(), 5)
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            pass
    finally:
        try:
            await run.flush_seen()  # what was sent before a hang-up still counts as read
        except Exception as exc:
            app.log.event("pop3.error", peer=conn.peer_ip, error=repr(exc))
        run.drop_read_ahead()
        run.release()
        if run.stop_wait is not None:
            run.stop_wait.cancel()
        await conn.close()
        metrics = app.metrics
        metrics.counter(
            "merpati_pop3_sessions_total", "POP3 sessions by how they ended", ["result"]
        ).labels(result.split(":")[0]).inc()
        if run.retrieved:
            metrics.counter("merpati_pop3_retrieved_total", "Messages sent by RETR").inc(
                run.retrieved
            )
        if run.deleted:
            metrics.counter("merpati_pop3_deleted_total", "Messages removed at QUIT").inc(
                run.deleted
            )
        app.log.event(
            "pop3.session",
            peer=conn.peer_ip,
            listener=conn.listener,
            tls=conn.tls_version or "no",
            account=run.account or "-",
            retrieved=run.retrieved,
            deleted=run.deleted,
            result=result,
        )
