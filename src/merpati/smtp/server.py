"""The asyncio transport of the SMTP server and the three listener factories.

One ``SmtpConnection`` per client: it feeds bytes to the sans-I/O ``Session``, carries out what
the session asks (policy decisions, AUTH checks, TLS upgrade, delivery) and writes replies when
the session needs more input (which batches replies to pipelined commands, rfc2920:3.1).

Invariants:
- The reply to the end of a message is written only after ``deliver`` returned, and deliver
  returns only when every copy is durable (fsynced) in the mail store or the queue.
- Timeouts follow rfc5321:4.5.3.2 (``command_timeout`` between commands, ``data_timeout``
  while message content is expected), and a whole transaction must finish within
  ``transaction_deadline``; on expiry the client gets 421 4.4.2 and is disconnected.
- Bytes received before a TLS upgrade are discarded (rfc3207:4.2), including any still in
  the stream reader's buffer.
- A failure in delivery gives the client 451 4.3.0 and is logged by exception type only; no
  exception text ever reaches a client.
- On shutdown an idle session is told 421 4.3.2 and closed; a busy one finishes its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import secrets
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from merpati.app import App
from merpati.delivery.api import Deliverer, DeliveryReport, Envelope
from merpati.delivery.deliver import make_deliverer
from merpati.server.connection import Connection
from merpati.server.registry import ListenerSpec
from merpati.smtp import policy, replies, trace
from merpati.smtp.events import (
    CLOSE,
    NEED_DATA,
    AuthRequest,
    MailRequest,
    MessageRequest,
    RcptRequest,
    StartTLSRequest,
)
from merpati.smtp.limits import MAX_RECEIVED_HEADERS
from merpati.smtp.replies import Reply
from merpati.smtp.session import Role, Session, Settings
from merpati.trust import hooks as trust_hooks

BUSY_REPLY = bytes(replies.BUSY)  # b"421 4.7.0 Too many connections, try later\r\n"
READ_SIZE = 256 * 1024
# Stop writing replies to a client that does not read them once this much is unsent.
WRITE_HIGH_WATER = 64 * 1024

_ID_PREFIX = secrets.token_hex(4)  # this process's; the counter makes each id its own
_id_counter = itertools.count(1)


def _message_id() -> str:
    """The id of one SMTP transaction (Received ``id``, logs): unique without a random draw
    per message."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def _deliverer(app: App) -> Deliverer:
    if app.deliver is None:
        app.deliver = make_deliverer(app)
    return app.deliver


class SmtpConnection:
    def __init__(self, app: App, role: Role, conn: Connection) -> None:
        self.app = app
        self.role = role
        self.conn = conn
        cfg = app.config
        self.limits = cfg.limits
        self.session = Session(
            Settings(
                hostname=cfg.hostname,
                role=role,
                client_ip=conn.peer_ip,
                max_size=cfg.limits.message_size,
                max_recipients=cfg.limits.recipients,
                max_errors=cfg.limits.bad_commands,
                starttls_offered=conn.tls_context is not None,
                tls_active=conn.tls_active,
                plaintext_auth=cfg.tls.allow_plaintext_auth,
            )
        )
        self.idle = False  # waiting for a command outside any transaction
        # When the command now being read began: a command line must be complete within
        # command_timeout however slowly its bytes trickle in (rfc5321:4.5.3.2.7).
        self.command_started = time.monotonic()
        self.commands_seen = 0
        self.tx_started: float | None = None
        self.result = "closed"
        metrics = app.metrics
        self.m_messages = metrics.counter(
            "merpati_smtp_messages_total", "Messages received by SMTP", ["listener", "result"]
        )
        self.m_bytes = metrics.counter(
            "merpati_smtp_message_bytes_total", "Octets of accepted messages", ["listener"]
        )
        self.m_delivery = metrics.histogram(
            "merpati_smtp_delivery_seconds", "Time from end of data to durable", ["listener"]
        )

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        started = time.monotonic()
        try:
            await self._loop()
        except asyncio.CancelledError:
            self.result = "shutdown"
            await self._final(replies.SHUTTING_DOWN)
        except (ConnectionError, ssl.SSLError, OSError):
            self.result = "connection-lost"
        finally:
            s = self.session
            self.app.log.event(
                "smtp.session",
                id=self.conn.id,
                listener=self.conn.listener,
                peer=self.conn.peer_ip,
                helo=s.helo,
                tls=s.tls_version or self.conn.tls_version,
                auth=s.account,
                commands=s.commands,
                messages=s.messages,
                errors=s.errors,
                result=self.result,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _loop(self) -> None:
        session = self.session
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                data = await self._read()
                session.receive_data(data)
            elif event is CLOSE:
                if self.result == "closed" and session.quit:
                    self.result = "quit"
                elif self.result == "closed" and session.errors >= self.limits.bad_commands:
                    self.result = "too-many-errors"
                await self._flush(final=True)
                return
            elif isinstance(event, StartTLSRequest):
                await self._start_tls()
            elif isinstance(event, MailRequest | RcptRequest | AuthRequest | MessageRequest):
                await self._decide(event)

    async def _decide(
        self, event: MailRequest | RcptRequest | AuthRequest | MessageRequest
    ) -> None:
        """Answer one decision event. A failure of a lookup or of delivery gives the client a
        temporary error (never the exception's text) and leaves the session usable."""
        session = self.session
        try:
            await self._answer(event)
        except Exception as exc:
            self.app.log.event(
                "smtp.error", id=self.conn.id, stage=type(event).__name__, error=type(exc).__name__
            )
            if isinstance(event, AuthRequest):
                session.auth_result(None, replies.AUTH_TEMP)
            else:
                session.respond(replies.TEMP_FAILURE)

    async def _answer(
        self, event: MailRequest | RcptRequest | AuthRequest | MessageRequest
    ) -> None:
        session = self.session
        if isinstance(event, MailRequest):
            reply = policy.check_mail(self.app, self.role, session.account, event.command)
            if reply.positive:  # issue 8: outbound rate per account
                reply = (
                    trust_hooks.mail_refusal(self.app, session.account, self.conn.peer_ip) or reply
                )
            session.respond(reply)
        elif isinstance(event, RcptRequest):
            reply, address = await policy.check_rcpt(self.app, session.account, event.command)
            if reply.positive and session.transaction is not None:  # issue 8: greylisting
                grey = await trust_hooks.rcpt_refusal(
                    self.app,
                    self.role,
                    session.account,
                    self.conn.peer_ip,
                    session.transaction.mail.address,
                    address or event.command.address,
                )
                reply, address = (grey, None) if grey is not None else (reply, address)
            session.respond(reply, address)
        elif isinstance(event, AuthRequest):
            account = await self.app.auth.verify(event.username, event.password, self.conn.peer_ip)
            self.app.log.event(
                "smtp.auth",
                id=self.conn.id,
                peer=self.conn.peer_ip,
                mechanism=event.mechanism,
                user=event.username,
                result="ok" if account else "failed",
            )
            session.auth_result(account)
        elif isinstance(event, MessageRequest):
            session.respond(await self._message(event))

    async def _read(self) -> bytes:
        session = self.session
        await self._flush()
        if self.app.stopping.is_set() and not session.in_transaction:
            session.close(replies.SHUTTING_DOWN)
            self.result = "shutdown"
            return b""
        now = time.monotonic()
        timeout = (
            self.limits.data_timeout if session.reading_message else self.limits.command_timeout
        )
        deadline_hit = False
        if session.commands != self.commands_seen or session.reading_message:
            self.commands_seen, self.command_started = session.commands, now
        elif not session.reading_message:
            timeout = max(
                0.0, min(timeout, self.command_started + self.limits.command_timeout - now)
            )
        if session.in_transaction:
            if self.tx_started is None:
                self.tx_started = now
            left = self.tx_started + self.limits.transaction_deadline - now
            if left < timeout:
                timeout, deadline_hit = max(left, 0.0), True
        else:
            self.tx_started = None
        self.idle = not session.in_transaction
        try:
            async with asyncio.timeout(timeout):
                data = await self.conn.reader.read(READ_SIZE)
        except TimeoutError:
            self.result = "deadline" if deadline_hit else "timeout"
            session.close(replies.DEADLINE if deadline_hit else replies.TIMEOUT)
            return b""
        except (ConnectionError, ssl.SSLError, OSError):
            self.result = "connection-lost"
            return b""
        finally:
            self.idle = False
        return data

    async def _flush(self, final: bool = False) -> None:
        out = self.session.data_to_send()
        writer = self.conn.writer
        if out and not writer.is_closing():
            writer.write(out)
        if final or writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
                async with asyncio.timeout(self.limits.command_timeout):
                    await writer.drain()

    async def _final(self, reply: Reply) -> None:
        """Best effort: tell the client why we hang up."""
        self.session.close(reply)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._flush(final=True))

    async def _start_tls(self) -> None:
        self.conn.pause_reading()  # before "220 Ready": the ClientHello must wait in the kernel
        await self._flush(final=True)
        try:
            await self.conn.start_tls(timeout=self.limits.command_timeout)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError, RuntimeError):
            self.result = "tls-failed"
            self.session.close()
            return
        self.session.tls_started(self.conn.tls_version, self.conn.tls_cipher)

    # -- a message ------------------------------------------------------------------------

    async def _message(self, event: MessageRequest) -> Reply:
        started = time.monotonic()
        envelope, data = event.envelope, event.data
        listener = self.conn.listener
        msg_id = _message_id()
        log = partial(
            self.app.log.event,
            "smtp.message",
            id=self.conn.id,
            msgid=msg_id,
            listener=listener,
            mail_from=envelope.mail_from,
            rcpts=len(envelope.recipients),
            size=len(data),
            bdat=event.via_bdat,
        )
        if trace.count_received(data) > MAX_RECEIVED_HEADERS:  # rfc5321:6.3
            log(result="loop")
            self.m_messages.labels(listener, "loop").inc()
            return replies.LOOP
        session = self.session
        if self.role == "mx" and session.account is None:  # issue 8: SPF/DKIM/DMARC/ARC
            refusal, envelope, data = await trust_hooks.check_message(self.app, envelope, data)
            if refusal is not None:
                log(result="dmarc-reject")
                self.m_messages.labels(listener, "refused").inc()
                return refusal
        now = datetime.now(UTC).astimezone()
        head = b""
        if self.role != "mx":
            head = trace.submission_headers(data, now, f"{msg_id}@{self.app.config.hostname}")
        info = trace.TraceInfo(
            helo=session.helo,
            client_ip=self.conn.peer_ip,
            hostname=self.app.config.hostname,
            esmtp=session.esmtp,
            tls_version=session.tls_version or self.conn.tls_version,
            tls_cipher=session.tls_cipher or self.conn.tls_cipher,
            authenticated=session.account is not None,
            smtputf8=envelope.smtputf8,
            auth_user=session.account if self.app.config.delivery.received_show_auth_user else None,
            message_id=msg_id,
            recipient=envelope.recipients[0].address if len(envelope.recipients) == 1 else None,
        )
        message = trace.received_header(info, now) + head + data
        if self.app.intake is not None:
            return await self._journal(envelope, message, msg_id, started, log, len(data))
        try:
            report = await _deliverer(self.app)(envelope, message)
        except Exception as exc:
            log(result="error", error=type(exc).__name__)
            self.m_messages.labels(listener, "error").inc()
            return replies.TEMP_FAILURE
        report = await self._settle(envelope, message, report)
        reply = reply_for(report, msg_id)
        self.m_delivery.labels(listener).observe(time.monotonic() - started)
        result = "accepted" if reply.positive else "refused"
        self.m_messages.labels(listener, result).inc()
        if reply.positive:
            self.m_bytes.labels(listener).inc(len(data))
        log(
            result=reply.code,
            queue_id=report.queue_id,
            seconds=round(time.monotonic() - started, 4),
        )
        return reply

    async def _journal(
        self,
        envelope: Envelope,
        message: bytes,
        msg_id: str,
        started: float,
        log: Callable[..., None],
        size: int,
    ) -> Reply:
        """The message is durable once journaled (rfc5321:6.1); delivery follows at once and
        failures after this point become bounces from the queue (merpati.delivery.intake)."""
        assert self.app.intake is not None
        listener = self.conn.listener
        try:
            intake_id = await self.app.intake.accept(envelope, message)
        except Exception as exc:
            log(result="error", error=type(exc).__name__)
            self.m_messages.labels(listener, "error").inc()
            return replies.TEMP_FAILURE
        self.m_delivery.labels(listener).observe(time.monotonic() - started)
        self.m_messages.labels(listener, "accepted").inc()
        self.m_bytes.labels(listener).inc(size)
        log(result=250, intake_id=intake_id, seconds=round(time.monotonic() - started, 4))
        return replies.reply(250, "2.0.0", f"OK id={msg_id} queued as {intake_id}")

    async def _settle(
        self, envelope: Envelope, message: bytes, report: DeliveryReport
    ) -> DeliveryReport:
        """Some recipients got the message and some failed: SMTP has one reply for all, so
        hand the failed ones to the queue (it retries local recipients and bounces when it
        must) and report success. Without a queue the report stands (the client retries)."""
        failed = [o for o in report.outcomes if not o.ok]
        queue = self.app.queue
        if not failed or len(failed) == len(report.outcomes) or queue is None:
            return report
        try:
            queue_id = await queue.enqueue(envelope, message, tuple(o.recipient for o in failed))
            queue.wake()
        except Exception as exc:
            self.app.log.event(
                "smtp.error", id=self.conn.id, stage="queue", error=type(exc).__name__
            )
            return report
        outcomes = tuple(
            o if o.ok else dataclasses.replace(o, ok=True, code=250, status="2.0.0", text="Queued")
            for o in report.outcomes
        )
        return DeliveryReport(outcomes, report.queue_id or queue_id)


def reply_for(report: DeliveryReport, msg_id: str) -> Reply:
    """One SMTP reply for a delivery report (SMTP has one reply per message, not per rcpt).

    All delivered: 250. Any temporary failure: that 4xx, so the client retries (recipients
    that did get it may see a duplicate; nothing is lost). Only permanent failures: the first
    of them if nobody got it, else 250 (the failed ones were checked at RCPT, so this only
    happens if an account vanished in between).
    """
    failures = [o for o in report.outcomes if not o.ok]
    if not failures:
        return replies.reply(250, "2.0.0", f"OK id={msg_id}")
    transient = [o for o in failures if o.code < 500]
    if transient:
        o = transient[0]
        return replies.reply(o.code, o.status, o.text)
    if len(failures) == len(report.outcomes):
        o = failures[0]
        return replies.reply(o.code, o.status, o.text)
    return replies.reply(250, "2.0.0", f"OK id={msg_id} (some recipients failed)")


async def _serve(app: App, role: Role, conn: Connection) -> None:
    refusal = await trust_hooks.connect_refusal(app, role, conn.peer_ip)  # issue 8
    if refusal is not None:
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
            conn.writer.write(refusal)
            async with asyncio.timeout(5):
                await conn.writer.drain()
        await conn.close()
        return
    smtp = SmtpConnection(app, role, conn)
    task = asyncio.current_task()

    async def watch_shutdown() -> None:
        await app.stopping.wait()
        if smtp.idle and task is not None:
            task.cancel()  # an idle session is told 421 4.3.2 at once

    watcher = asyncio.create_task(watch_shutdown())
    try:
        await smtp.run()
    finally:
        watcher.cancel()


def mx_listener(app: App) -> ListenerSpec:
    """Port 25: mail from the world for local domains; STARTTLS offered."""
    return ListenerSpec(partial(_serve, app, "mx"), "starttls", BUSY_REPLY)


def submission_listener(app: App) -> ListenerSpec:
    """Port 587: our users' mail; STARTTLS, then AUTH before MAIL (rfc6409)."""
    return ListenerSpec(partial(_serve, app, "submission"), "starttls", BUSY_REPLY)


def submissions_listener(app: App) -> ListenerSpec:
    """Port 465: as submission, over implicit TLS (rfc8314:3.3)."""
    return ListenerSpec(partial(_serve, app, "submissions"), "implicit", BUSY_REPLY)
