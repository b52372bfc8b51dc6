"""A small asyncio SMTP client for outbound delivery (our own; smtplib is not used).

It drives one connection: greeting, EHLO (HELO fallback), STARTTLS, AUTH PLAIN/LOGIN, and
transactions with or without PIPELINING (rfc2920). Reply parsing and command building are the
sans-I/O ``smtpproto`` module; this module only moves bytes and applies the timeouts of
rfc5321:4.5.3.2. It makes no routing or retry decisions: failures are raised as
``SMTPClientError`` (connection-level, always temporary) or ``SMTPReplyError`` (an unexpected
reply at connection set-up), and transaction replies are returned for the caller to judge.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from dataclasses import dataclass

from merpati.queue.smtpproto import (
    Extensions,
    Reply,
    ReplyParser,
    SMTPProtocolError,
    auth_plain,
)

__all__ = ["SMTPClient", "SMTPClientError", "SMTPReplyError", "Timeouts", "TransactionReplies"]

# Bytes written per drain while sending the message body (each chunk has its own timeout).
DATA_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 30.0
    greeting: float = 300.0  # rfc5321:4.5.3.2.1 initial 220: 5 minutes
    command: float = 300.0  # rfc5321:4.5.3.2.2/4.5.3.2.3 MAIL and RCPT: 5 minutes
    data_init: float = 120.0  # rfc5321:4.5.3.2.4 DATA initiation: 2 minutes
    data_block: float = 180.0  # rfc5321:4.5.3.2.5 each data block: 3 minutes
    data_end: float = 600.0  # rfc5321:4.5.3.2.6 final reply after ".": 10 minutes


class SMTPClientError(Exception):
    """Connection-level failure: refused, reset, timed out, TLS failed, garbage replies."""


class SMTPReplyError(SMTPClientError):
    """The peer answered connection set-up (greeting, EHLO, STARTTLS, AUTH) with an error."""

    def __init__(self, stage: str, reply: Reply) -> None:
        super().__init__(f"{stage}: {reply}")
        self.stage = stage
        self.reply = reply


@dataclass(frozen=True, slots=True)
class TransactionReplies:
    mail: Reply
    rcpts: tuple[Reply | None, ...]  # None: not sent (MAIL failed)
    data: Reply | None  # the final reply after the message, or the failed DATA reply
    completed: bool = False  # the message was sent and its final reply read


class SMTPClient:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeouts: Timeouts
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeouts = timeouts
        self._parser = ReplyParser()
        self._replies: deque[Reply] = deque()
        self.ext = Extensions()
        self.tls_version: str | None = None
        self.broken = False
        self._note_tls()

    @classmethod
    async def connect(
        cls,
        ip: str,
        port: int,
        *,
        timeouts: Timeouts,
        source_address: str = "",
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str = "",
    ) -> SMTPClient:
        """Open a TCP (or implicit-TLS) connection and read the 220 greeting."""
        local_addr = None
        if source_address and ((":" in source_address) == (":" in ip)):
            local_addr = (source_address, 0)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    ip,
                    port,
                    local_addr=local_addr,
                    ssl=tls_context,
                    server_hostname=(server_hostname or None) if tls_context else None,
                    ssl_handshake_timeout=timeouts.connect if tls_context else None,
                    limit=1 << 16,
                ),
                timeouts.connect,
            )
        except TimeoutError:
            raise SMTPClientError(f"connection to {ip} port {port} timed out") from None
        except ssl.SSLError as exc:
            raise SMTPClientError(f"TLS handshake with {ip} failed ({exc.reason})") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SMTPClientError(f"cannot connect to {ip} port {port}: {reason}") from None
        client = cls(reader, writer, timeouts)
        greeting = await client.read_reply(timeouts.greeting)
        if greeting.code != 220:  # rfc5321:3.1 a 554 greeting means "no service here"
            await client.close()
            raise SMTPReplyError("greeting", greeting)
        return client

    def _note_tls(self) -> None:
        obj = self._writer.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
            self.tls_version = obj.version()

    async def read_reply(self, timeout: float) -> Reply:
        while not self._replies:
            try:
                data = await asyncio.wait_for(self._reader.read(1 << 16), timeout)
            except TimeoutError:
                self.broken = True
                raise SMTPClientError("timed out waiting for a reply") from None
            except (OSError, ssl.SSLError) as exc:
                self.broken = True
                raise SMTPClientError(f"connection lost: {type(exc).__name__}") from None
            if not data:
                self.broken = True
                raise SMTPClientError("connection closed by the peer")
            try:
                self._replies.extend(self._parser.feed(data))
            except SMTPProtocolError as exc:
                self.broken = True
                raise SMTPClientError(f"bad reply from the peer: {exc}") from None
        return self._replies.popleft()

    async def _send(self, data: bytes, timeout: float) -> None:
        try:
            for start in range(0, len(data), DATA_CHUNK):
                self._writer.write(data[start : start + DATA_CHUNK])
                await asyncio.wait_for(self._writer.drain(), timeout)
        except TimeoutError:
            self.broken = True
            raise SMTPClientError("timed out sending to the peer") from None
        except (OSError, ssl.SSLError) as exc:
            self.broken = True
            raise SMTPClientError(f"connection lost: {type(exc).__name__}") from None

    async def command(self, line: bytes, timeout: float | None = None) -> Reply:
        t = self._timeouts.command if timeout is None else timeout
        await self._send(line, t)
        return await self.read_reply(t)

    async def ehlo(self, name: str) -> None:
        reply = await self.command(f"EHLO {name}\r\n".encode())
        if reply.code == 250:
            self.ext = Extensions.parse(reply)
            return
        if reply.permanent and reply.code != 554:  # rfc5321:3.2 fall back to HELO
            reply = await self.command(f"HELO {name}\r\n".encode())
            if reply.code == 250:
                self.ext = Extensions()
                return
        raise SMTPReplyError("EHLO", reply)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, name: str) -> None:
        """rfc3207:4 upgrade, then EHLO again (everything learnt before is forgotten)."""
        reply = await self.command(b"STARTTLS\r\n")
        if reply.code != 220:
            raise SMTPReplyError("STARTTLS", reply)
        if self._replies or self._parser.pending:
            self.broken = True  # rfc3207:4.2 nothing may follow the 220 in the clear
            raise SMTPClientError("data after the STARTTLS reply")
        try:
            await asyncio.wait_for(
                self._writer.start_tls(
                    context,
                    server_hostname=server_hostname or None,
                    ssl_handshake_timeout=self._timeouts.connect,
                ),
                self._timeouts.connect + 1,
            )
        except (TimeoutError, ssl.SSLError, OSError, ConnectionError) as exc:
            self.broken = True
            raise SMTPClientError(f"TLS handshake failed: {type(exc).__name__}") from None
        self._note_tls()
        self.ext = Extensions()
        await self.ehlo(name)

    async def authenticate(self, username: str, password: str) -> None:
        """AUTH PLAIN (rfc4616) or LOGIN, whichever the peer offers."""
        if "PLAIN" in self.ext.auth:
            reply = await self.command(b"AUTH PLAIN " + auth_plain(username, password) + b"\r\n")
        elif "LOGIN" in self.ext.auth:
            reply = await self.command(b"AUTH LOGIN\r\n")
            for secret in (username, password):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(secret.encode("utf-8")) + b"\r\n")
        else:
            raise SMTPReplyError("AUTH", Reply(530, ("5.7.0 the relay offers no usable AUTH",)))
        if reply.code != 235:
            raise SMTPReplyError("AUTH", reply)

    async def transaction(
        self, mail: bytes, rcpts: list[bytes], payload: bytes, *, chunked: bool = False
    ) -> TransactionReplies:
        """One mail transaction. With PIPELINING, MAIL, every RCPT and DATA go in one write
        (rfc2920:3.1); replies are read in order. ``chunked`` sends ``payload`` (raw, not
        dot-stuffed) with one ``BDAT n LAST`` (rfc3030:2) instead of DATA."""
        if chunked:
            return await self._chunked(mail, rcpts, payload)
        if self.ext.has("PIPELINING"):
            await self._send(mail + b"".join(rcpts) + b"DATA\r\n", self._timeouts.command)
            mail_reply = await self.read_reply(self._timeouts.command)
            rcpt_replies: list[Reply | None] = []
            for _ in rcpts:
                rcpt_replies.append(await self.read_reply(self._timeouts.command))
            data_reply = await self.read_reply(self._timeouts.data_init)
            accepted = mail_reply.positive and any(r and r.positive for r in rcpt_replies)
            if data_reply.code != 354:
                return TransactionReplies(mail_reply, tuple(rcpt_replies), data_reply)
            if not accepted:
                # rfc2920:3.1 the server accepted DATA with no valid recipient: end it empty.
                await self._send(b".\r\n", self._timeouts.data_block)
                await self.read_reply(self._timeouts.data_end)
                return TransactionReplies(mail_reply, tuple(rcpt_replies), None)
        else:
            mail_reply = await self.command(mail)
            if not mail_reply.positive:
                return TransactionReplies(mail_reply, tuple(None for _ in rcpts), None)
            rcpt_replies = [await self.command(r) for r in rcpts]
            if not any(r and r.positive for r in rcpt_replies):
                await self.rset()
                return TransactionReplies(mail_reply, tuple(rcpt_replies), None)
            data_reply = await self.command(b"DATA\r\n", self._timeouts.data_init)
            if data_reply.code != 354:
                return TransactionReplies(mail_reply, tuple(rcpt_replies), data_reply)
        await self._send(payload, self._timeouts.data_block)
        final = await self.read_reply(self._timeouts.data_end)
        return TransactionReplies(mail_reply, tuple(rcpt_replies), final, completed=True)

    async def _chunked(self, mail: bytes, rcpts: list[bytes], payload: bytes) -> TransactionReplies:
        if self.ext.has("PIPELINING"):
            await self._send(mail + b"".join(rcpts), self._timeouts.command)
            mail_reply = await self.read_reply(self._timeouts.command)
            rcpt_replies: list[Reply | None] = []
            for _ in rcpts:
                rcpt_replies.append(await self.read_reply(self._timeouts.command))
        else:
            mail_reply = await self.command(mail)
            if not mail_reply.positive:
                return TransactionReplies(mail_reply, tuple(None for _ in rcpts), None)
            rcpt_replies = [await self.command(r) for r in rcpts]
        if not mail_reply.positive or not any(r and r.positive for r in rcpt_replies):
            return TransactionReplies(mail_reply, tuple(rcpt_replies), None)
        await self._send(
            f"BDAT {len(payload)} LAST\r\n".encode() + payload, self._timeouts.data_block
        )
        final = await self.read_reply(self._timeouts.data_end)
        return TransactionReplies(mail_reply, tuple(rcpt_replies), final, completed=True)

    async def rset(self) -> None:
        try:
            reply = await self.command(b"RSET\r\n")
        except SMTPClientError:
            return
        if not reply.positive:
            self.broken = True

    async def quit(self) -> None:
        if not self.broken:
            try:
                await self.command(b"QUIT\r\n", min(self._timeouts.command, 10.0))
            except SMTPClientError:
                pass
        await self.close()

    async def close(self) -> None:
        self.broken = True
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 5)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
