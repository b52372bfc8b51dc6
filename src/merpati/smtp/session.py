"""The SMTP session state machine (sans-I/O): bytes in, replies and events out.

Feed bytes with ``receive_data``; call ``next_event`` until it returns ``NEED_DATA`` or
``CLOSE``; answer decision events (see ``events``); send ``data_to_send()`` whenever the
transport is about to wait for input (that is exactly rfc2920:3.1: replies to a pipelined group
go out together when the server would otherwise block).

Framing is a buffer scan chosen by state: command lines (CRLF only, with a length cap enforced
before a line is kept: over it, the line is drained and refused once), DATA bodies (one search
for CRLF.CRLF, dot-unstuffing in bulk, over the size limit the rest is drained and 552 sent
once), BDAT chunks (exact byte counts, rfc3030:2). The states and the commands each allows are
the ``ALLOWED`` table below; commands dispatch through ``_HANDLERS``.

Connection state (EHLO name, TLS, authenticated account, error count) is kept apart from
transaction state (``Transaction``), which RSET, end of data, HELO/EHLO and STARTTLS reset.
Does not: look up accounts, check passwords, write to disk, read the clock (timeouts and the
transaction deadline are the transport's), or decide relay policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from merpati.auth import sasl
from merpati.delivery.api import BodyType, Envelope, Recipient
from merpati.smtp import commands as c
from merpati.smtp import data as body_rules
from merpati.smtp import limits, replies
from merpati.smtp.events import (
    CLOSE,
    NEED_DATA,
    AuthRequest,
    Event,
    MailRequest,
    MessageRequest,
    RcptRequest,
    StartTLSRequest,
)
from merpati.smtp.replies import Reply

Role = Literal["mx", "submission", "submissions"]


class State(Enum):
    INIT = "init"  # greeted; waiting for EHLO/HELO
    READY = "ready"  # EHLO done, no transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading a DATA body
    BDAT = "bdat"  # between BDAT chunks of one message
    AUTH = "auth"  # inside a SASL exchange (lines are SASL responses)
    CLOSED = "closed"


_ANY = (c.Noop, c.Rset, c.Quit, c.Vrfy, c.Help)
# The commands each state accepts; anything else gets the state's sequence error.
ALLOWED: dict[State, tuple[type[c.Command], ...]] = {
    State.INIT: (c.Helo, c.StartTLS, *_ANY),
    State.READY: (c.Helo, c.Mail, c.StartTLS, c.Auth, *_ANY),
    State.MAIL: (c.Helo, c.Rcpt, c.Data, c.Bdat, c.Mail, c.Auth, *_ANY),
    State.RCPT: (c.Helo, c.Rcpt, c.Data, c.Bdat, c.Mail, c.Auth, *_ANY),
    State.BDAT: (c.Bdat, c.Noop, c.Rset, c.Quit),
    State.DATA: (),
    State.AUTH: (),
    State.CLOSED: (),
}
# What a command gets in a state that does not allow it.
SEQUENCE_ERRORS: dict[State, Reply] = {
    State.INIT: replies.NEED_HELO,
    State.READY: replies.NEED_MAIL,
    State.MAIL: replies.BAD_SEQUENCE,
    State.RCPT: replies.BAD_SEQUENCE,
    State.BDAT: replies.BAD_SEQUENCE,
}


class UsageError(Exception):
    """The transport used the session wrongly (a bug in our code, not the peer's)."""


@dataclass(frozen=True, slots=True)
class Settings:
    hostname: str
    role: Role
    client_ip: str
    max_size: int
    max_recipients: int
    max_errors: int
    starttls_offered: bool  # the listener can upgrade (STARTTLS advertised until active)
    tls_active: bool = False  # implicit TLS
    plaintext_auth: bool = False  # config tls.allow_plaintext_auth


@dataclass(slots=True)
class Transaction:
    """One mail transaction: from MAIL to the end of the message or RSET."""

    mail: c.Mail
    recipients: list[Recipient] = field(default_factory=list)
    chunks: bytearray = field(default_factory=bytearray)  # BDAT content so far
    failed: Reply | None = None  # a BDAT chunk failed; later chunks get 503


class Session:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State.INIT
        self.helo: str | None = None
        self.esmtp = False
        self.tls_active = settings.tls_active
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self.account: str | None = None
        self.errors = 0
        self.transaction: Transaction | None = None
        self.messages = 0  # messages handed to the transport
        self.quit = False  # the client said QUIT
        self.junk = 0  # NOOP/RSET/VRFY/HELP so far
        self.commands = 0
        self._buf = bytearray()
        self._eof = False
        self._out: list[bytes] = []
        self._pending: Event | None = None
        self._scan = 0  # DATA: where the next terminator search starts
        self._draining_line = False
        self._data_at_start = True
        self._data_discarded = 0
        self._chunk_left = 0  # BDAT: octets of the current chunk still to read
        self._chunk_last = False
        self._chunk_error: Reply | None = None
        self._in_chunk = False
        self._sasl: sasl.SaslExchange | None = None
        self._handlers: dict[type[c.Command], Callable[..., Event | None]] = {
            c.Helo: self._helo,
            c.Mail: self._mail,
            c.Rcpt: self._rcpt,
            c.Data: self._data,
            c.Bdat: self._bdat,
            c.Rset: self._rset,
            c.Noop: self._noop,
            c.Quit: self._quit,
            c.Vrfy: self._vrfy,
            c.Help: self._help,
            c.StartTLS: self._starttls,
            c.Auth: self._auth,
        }
        self._send(replies.reply(220, "", f"{settings.hostname} ESMTP Merpati"))

    # -- the transport's side ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` is end of input."""
        if data:
            self._buf += data
        else:
            self._eof = True

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    @property
    def reading_message(self) -> bool:
        """True while message content is expected (the transport uses the DATA timeout)."""
        return self.state is State.DATA or self._in_chunk

    @property
    def in_transaction(self) -> bool:
        return self.transaction is not None

    def next_event(self) -> Event:
        if self._pending is not None:
            raise UsageError(f"answer {type(self._pending).__name__} first")
        while True:
            if self.state is State.CLOSED:
                return CLOSE
            if self.state is State.DATA:
                event = self._read_data()
            elif self._in_chunk:
                event = self._read_chunk()
            else:
                event = self._read_line()
            if event is NEED_DATA:
                if self._eof:
                    self.state = State.CLOSED
                    return CLOSE
                return NEED_DATA
            if event is not None:
                if event is not CLOSE:
                    self._pending = event
                return event

    def respond(self, reply: Reply, address: str | None = None) -> None:
        """Answer a MailRequest, RcptRequest or MessageRequest. For RCPT, ``address`` replaces
        the address as parsed (the transport's canonical form)."""
        pending = self._pending
        self._pending = None
        if isinstance(pending, MailRequest):
            self._mail_answered(pending.command, reply)
        elif isinstance(pending, RcptRequest):
            self._rcpt_answered(pending.command, reply, address)
        elif isinstance(pending, MessageRequest):
            self.transaction = None
            self.state = State.READY
            self._send(reply)
        else:
            self._pending = pending
            raise UsageError("nothing to respond to")

    def auth_result(self, account: str | None, reply: Reply | None = None) -> None:
        """Answer an AuthRequest with the authenticated account, or None for failure (with an
        optional reply other than 535, e.g. a 454 temporary failure)."""
        if not isinstance(self._pending, AuthRequest):
            raise UsageError("no AUTH pending")
        self._pending = None
        self.state = State.READY
        if account is not None:
            self.account = account
            self._send(replies.AUTH_OK)
        else:
            self._send(reply or replies.AUTH_FAILED)

    def tls_started(self, version: str | None, cipher: str | None) -> None:
        """The upgrade worked: rfc3207:4.2 forget everything learnt before it."""
        if not isinstance(self._pending, StartTLSRequest):
            raise UsageError("no STARTTLS pending")
        self._pending = None
        self.tls_active = True
        self.tls_version, self.tls_cipher = version, cipher
        self.helo, self.esmtp, self.account, self.transaction = None, False, None, None
        self._buf.clear()
        self.state = State.INIT

    def close(self, reply: Reply | None = None) -> None:
        """Close the session from the transport's side (timeout, shutdown), with a reply."""
        if reply is not None and self.state is not State.CLOSED:
            self._send(reply)
        self.state = State.CLOSED
        self._pending = None

    # -- framing -----------------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out.append(bytes(reply))
        if reply.permanent:
            self.errors += 1
            if self.errors >= self.settings.max_errors and self.state is not State.CLOSED:
                self._out.append(bytes(replies.TOO_MANY_ERRORS))
                self.state = State.CLOSED

    def _read_line(self) -> Event | None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > limits.FRAMING_LINE_MAX:
                # Over the cap: drop what we have (keeping a trailing CR) and drain to CRLF.
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
                self._draining_line = True
            return NEED_DATA
        line = bytes(buf[:end])
        del buf[: end + 2]
        if self._draining_line:
            self._draining_line = False
            return self._line_too_long()
        if self.state is State.AUTH:
            return self._auth_line(line)
        if len(line) + 2 > c.LINE_LIMITS.get(c.verb_of(line), limits.COMMAND_LINE_MAX):
            return self._line_too_long()
        return self._command(line)

    def _line_too_long(self) -> Event | None:
        if self.state is State.AUTH:
            self._sasl = None
            self.state = State.READY
            self._send(replies.AUTH_LINE_TOO_LONG)
        else:
            self._send(replies.LINE_TOO_LONG)
        return None

    def _command(self, line: bytes) -> Event | None:
        self.commands += 1
        utf8 = self.transaction is not None and self.transaction.mail.smtputf8
        try:
            command = c.parse_command(line, utf8)
        except c.CommandError as exc:
            # A RCPT/MAIL out of sequence is a sequence error before it is a syntax error.
            verb = c.verb_of(line)
            if verb in (b"RCPT", b"DATA", b"BDAT") and self.state in (State.INIT, State.READY):
                self._send(SEQUENCE_ERRORS[self.state])
            else:
                self._send(exc.reply)
            if verb == b"BDAT" and exc.reply is replies.SYNTAX_ERROR:
                # rfc3030:3 we cannot know the chunk size, so the stream is lost: close.
                self.close(replies.reply(421, "4.5.0", "Cannot parse BDAT, closing"))
            return None
        if not isinstance(command, ALLOWED[self.state]):
            return self._out_of_sequence(command)
        if isinstance(command, c.Noop | c.Rset | c.Vrfy | c.Help):
            self.junk += 1
            if self.junk > limits.JUNK_COMMANDS_MAX:
                self.close(replies.TOO_MANY_JUNK)
                return None
        return self._handlers[type(command)](command)

    def _out_of_sequence(self, command: c.Command) -> Event | None:
        if isinstance(command, c.Bdat):  # the chunk must still be read to stay in sync
            return self._start_chunk(command, SEQUENCE_ERRORS[self.state])
        if isinstance(command, c.Rcpt | c.Data) and self.state is State.READY:
            self._send(replies.NEED_MAIL)
        elif isinstance(command, c.Mail) and self.state is State.INIT:
            self._send(replies.NEED_HELO)
        else:
            self._send(SEQUENCE_ERRORS.get(self.state, replies.BAD_SEQUENCE))
        return None

    def _read_data(self) -> Event | None:
        buf = self._buf
        end = body_rules.find_end(buf, self._scan, self._data_at_start)
        if end == -1:
            if self._over_size(len(buf), buf):
                # Drain: keep only what could begin the terminator.
                self._data_discarded += len(buf) - 4
                del buf[:-4]
                self._data_at_start = False
            self._scan = max(0, len(buf) - 4)
            return NEED_DATA
        if end == -2:
            raw, consumed = b"", 3
        else:
            raw, consumed = bytes(buf[: end + 2]), end + 5
        del buf[:consumed]
        discarded = self._data_discarded
        self._scan, self._data_at_start, self._data_discarded = 0, True, 0
        self.state = State.RCPT
        if discarded:
            body = b""
            refusal: Reply | None = replies.MESSAGE_TOO_BIG
        else:
            body = body_rules.unstuff(raw)
            refusal = (
                replies.MESSAGE_TOO_BIG
                if len(body) > self.settings.max_size
                else body_rules.check_body(body, binary=False)
            )
        if refusal is not None:
            self.transaction = None
            self.state = State.READY
            self._send(refusal)
            return None
        return self._message(body, via_bdat=False)

    def _over_size(self, size: int, buf: bytearray) -> bool:
        """True if a DATA body of ``size`` raw (dot-stuffed) octets is surely over the limit."""
        limit = self.settings.max_size
        if self._data_discarded:
            return True
        if size <= limit:
            return False
        # Each stuffed dot is one octet to discount; 3 more may be the terminator's ".\r\n".
        dots = buf.count(b"\n.") + (1 if self._data_at_start and buf[:1] == b"." else 0)
        return size - dots - 3 > limit

    def _start_chunk(self, command: c.Bdat, error: Reply | None) -> Event | None:
        self._chunk_left, self._chunk_last, self._chunk_error = command.size, command.last, error
        self._in_chunk = True
        return None

    def _read_chunk(self) -> Event | None:
        buf = self._buf
        take = min(self._chunk_left, len(buf))
        tx = self.transaction
        if take:
            if self._chunk_error is None and tx is not None:
                if len(tx.chunks) + take > self.settings.max_size:
                    self._chunk_error = replies.MESSAGE_TOO_BIG
                    tx.chunks.clear()
                else:
                    tx.chunks += memoryview(buf)[:take]
            del buf[:take]
            self._chunk_left -= take
        if self._chunk_left:
            return NEED_DATA
        self._in_chunk = False
        error, last = self._chunk_error, self._chunk_last
        self._chunk_error = None
        if tx is None or error is not None:
            if tx is not None:
                tx.failed = tx.failed or error
                tx.chunks.clear()
                self.state = State.BDAT
            self._send(error or replies.BAD_SEQUENCE)
            return None
        if not last:
            self.state = State.BDAT
            self._send(replies.reply(250, "2.0.0", f"{len(tx.chunks)} octets received"))
            return None
        body = bytes(tx.chunks)
        tx.chunks.clear()
        refusal = body_rules.check_body(body, binary=tx.mail.body is BodyType.BINARY)
        if refusal is not None:
            self.transaction = None
            self.state = State.READY
            self._send(refusal)
            return None
        return self._message(body, via_bdat=True)

    def _message(self, body: bytes, via_bdat: bool) -> Event:
        tx = self.transaction
        if tx is None:
            raise UsageError("message without a transaction")
        mail = tx.mail
        envelope = Envelope(
            mail_from=mail.address,
            recipients=tuple(tx.recipients),
            body=mail.body or BodyType.SEVEN_BIT,
            smtputf8=mail.smtputf8,
            ret=mail.ret,
            envid=mail.envid,
            auth_user=self.account,
            client_ip=self.settings.client_ip,
            helo=self.helo,
        )
        self.messages += 1
        return MessageRequest(envelope, body, via_bdat)

    # -- command handlers ---------------------------------------------------------------------

    def _ehlo_lines(self, greeting: str) -> tuple[str, ...]:
        lines = [
            greeting,
            "PIPELINING",  # rfc2920
            f"SIZE {self.settings.max_size}",  # rfc1870
            "8BITMIME",  # rfc6152
            "SMTPUTF8",  # rfc6531
            "ENHANCEDSTATUSCODES",  # rfc2034
            "CHUNKING",  # rfc3030
            "BINARYMIME",  # rfc3030
            "DSN",  # rfc3461
        ]
        if self.settings.starttls_offered and not self.tls_active:
            lines.append("STARTTLS")  # rfc3207
        if self._auth_allowed():
            lines.append("AUTH " + " ".join(sasl.MECHANISMS))  # rfc4954
        lines.append("HELP")
        return tuple(lines)

    def _helo(self, command: c.Helo) -> None:
        # rfc5321:4.1.4 EHLO/HELO in a transaction resets it.
        self.transaction = None
        self.helo, self.esmtp = command.domain, command.extended
        self.state = State.READY
        greeting = f"{self.settings.hostname} greets {command.domain}"
        if command.extended:
            self._send(Reply(250, "", self._ehlo_lines(greeting)))
        else:
            self._send(replies.reply(250, "", greeting))

    def _mail(self, command: c.Mail) -> Event | None:
        if self.transaction is not None:
            self._send(replies.NESTED_MAIL)
            return None
        if self.settings.role != "mx" and self.account is None:
            self._send(replies.AUTH_REQUIRED)  # rfc6409:4.3, rfc4954:6
            return None
        if command.size is not None and command.size > self.settings.max_size:
            self._send(replies.DECLARED_TOO_BIG)  # rfc1870:6
            return None
        return MailRequest(command)

    def _mail_answered(self, command: c.Mail, reply: Reply) -> None:
        self._send(reply)
        if reply.positive:
            self.transaction = Transaction(command)
            self.state = State.MAIL

    def _rcpt(self, command: c.Rcpt) -> Event | None:
        tx = self.transaction
        if tx is None:
            self._send(replies.NEED_MAIL)
            return None
        if len(tx.recipients) >= self.settings.max_recipients:
            self._send(replies.TOO_MANY_RCPTS)  # rfc5321:4.5.3.1.8
            return None
        return RcptRequest(command)

    def _rcpt_answered(self, rc: c.Rcpt, reply: Reply, address: str | None) -> None:
        self._send(reply)
        tx = self.transaction
        if reply.positive and tx is not None:
            tx.recipients.append(Recipient(address or rc.address, rc.notify, rc.orcpt))
            self.state = State.RCPT

    def _data(self, command: c.Data) -> None:
        tx = self.transaction
        if tx is None or not tx.recipients:
            self._send(replies.NO_VALID_RCPTS if tx is not None else replies.NEED_MAIL)
            return
        if tx.mail.body is BodyType.BINARY:
            self._send(replies.BINARY_NEEDS_BDAT)  # rfc3030:3
            return
        self.state = State.DATA
        self._scan, self._data_at_start, self._data_discarded = 0, True, 0
        self._send(replies.START_DATA)

    def _bdat(self, command: c.Bdat) -> Event | None:
        tx = self.transaction
        if tx is None:
            return self._start_chunk(command, replies.NEED_MAIL)
        if tx.failed is not None:
            return self._start_chunk(command, replies.BDAT_AFTER_FAILURE)
        if not tx.recipients:
            return self._start_chunk(command, replies.NO_VALID_RCPTS)
        if len(tx.chunks) + command.size > self.settings.max_size:
            tx.chunks.clear()
            return self._start_chunk(command, replies.MESSAGE_TOO_BIG)
        return self._start_chunk(command, None)

    def _rset(self, command: c.Rset) -> None:
        self.transaction = None
        self.state = State.READY if self.helo is not None else State.INIT
        self._send(replies.RESET_OK)

    def _noop(self, command: c.Noop) -> None:
        self._send(replies.NOOP_OK)

    def _quit(self, command: c.Quit) -> Event:
        self.quit = True
        self._send(replies.CLOSING)
        self.state = State.CLOSED
        return CLOSE

    def _vrfy(self, command: c.Vrfy) -> None:
        self._send(replies.VRFY_CANNOT)

    def _help(self, command: c.Help) -> None:
        self._send(replies.HELP)

    def _starttls(self, command: c.StartTLS) -> Event | None:
        if not self.settings.starttls_offered:
            self._send(replies.NO_TLS)
            return None
        if self.tls_active:
            self._send(replies.TLS_ACTIVE)
            return None
        if self.transaction is not None:
            self._send(replies.BAD_SEQUENCE)
            return None
        self._send(replies.READY_TLS)
        # rfc3207:4.2 anything the client pipelined after STARTTLS is discarded, never run.
        self._buf.clear()
        return StartTLSRequest()

    def _auth_allowed(self) -> bool:
        return self.tls_active or self.settings.plaintext_auth

    def _auth(self, command: c.Auth) -> Event | None:
        if self.account is not None:
            self._send(replies.ALREADY_AUTH)  # rfc4954:4
            return None
        if self.transaction is not None:
            self._send(replies.NO_AUTH_IN_TRANSACTION)
            return None
        if not self._auth_allowed():
            self._send(replies.TLS_REQUIRED_FOR_AUTH)
            return None
        try:
            self._sasl = sasl.start(command.mechanism, command.initial)
        except sasl.UnknownMechanism:
            self._send(replies.AUTH_UNKNOWN_MECH)
            return None
        return self._sasl_step(None)

    def _auth_line(self, line: bytes) -> Event | None:
        return self._sasl_step(line)

    def _sasl_step(self, response: bytes | None) -> Event | None:
        exchange = self._sasl
        if exchange is None:
            raise UsageError("no SASL exchange")
        try:
            result = exchange.step(response)
        except sasl.SaslCancelled:
            self._auth_end(replies.AUTH_CANCELLED)
            return None
        except sasl.SaslMalformed:
            self._auth_end(replies.AUTH_MALFORMED)
            return None
        if isinstance(result, sasl.Challenge):
            self.state = State.AUTH
            self._out.append(b"334 " + result.b64 + b"\r\n")  # rfc4954:4
            return None
        self._sasl = None
        self.state = State.READY
        if result.authzid and result.authzid != result.authcid:
            self._auth_end(replies.AUTH_FAILED)  # no proxy authorisation
            return None
        return AuthRequest(exchange.mechanism, result.authcid, result.password)

    def _auth_end(self, reply: Reply) -> None:
        self._sasl = None
        self.state = State.READY
        self._send(reply)
