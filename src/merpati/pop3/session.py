"""The POP3 session state machine (sans-I/O): bytes in, actions out.

Does: run one session through the states of rfc1939:3 (AUTHORIZATION, TRANSACTION, UPDATE)
with the commands each allows declared once in ``ALLOWED``; authentication by USER/PASS and
SASL (rfc5034, through ``merpati.auth.sasl``); CAPA (rfc2449), STLS (rfc2595), UTF8 (rfc6856);
every reply text and response code; counting errors and closing after too many.
Does not: read sockets, await anything, touch the store, the clock or files. Whatever needs
the world is an *action* the transport carries out, reporting back through one of the
completion methods (``verified``, ``maildrop_opened``, ``message_fetched``, ``tls_started``,
``committed``...) before it asks for the next action.

Usage::

    s = Pop3Session(...); send(s.greeting())
    loop: a = s.next_action()
          NEED_DATA -> read bytes, s.receive(data)
          Send -> write a.data;  Verify -> s.verified(await auth(...));  Close -> stop
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final

from merpati.address import AddressError, canonical_address
from merpati.auth import sasl
from merpati.mailstore.api import MessageInfo
from merpati.pop3 import replies
from merpati.pop3.actions import (
    NEED_DATA,
    Action,
    Close,
    Commit,
    FetchMessage,
    MarkSeen,
    NeedData,
    OpenMaildrop,
    Send,
    StartTLS,
    Verify,
)
from merpati.pop3.commands import Command, CommandError, parse_command, parse_count, parse_msgnum
from merpati.pop3.framing import COMMAND_LINE_LIMIT, SASL_LINE_LIMIT, LineReader, LineTooLong
from merpati.pop3.maildrop import Maildrop, NoSuchMessageNumber
from merpati.pop3.replies import RespCode, err, ok

__all__ = [
    "ALLOWED",
    "NEED_DATA",
    "Close",
    "Commit",
    "FetchMessage",
    "MarkSeen",
    "OpenMaildrop",
    "Pop3Session",
    "Send",
    "StartTLS",
    "State",
    "Verify",
]


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


# The commands each state accepts (rfc1939:4-7, rfc2449:5 CAPA in both, rfc2595:4 STLS and
# rfc6856:2 UTF8 only before authentication, rfc5034:4 AUTH).
ALLOWED: Final[dict[State, frozenset[str]]] = {
    State.AUTHORIZATION: frozenset({"USER", "PASS", "AUTH", "CAPA", "STLS", "UTF8", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL", "CAPA"}
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}


class SessionError(RuntimeError):
    """The transport broke the contract (e.g. asked for an action while one is pending)."""


@dataclass(frozen=True, slots=True)
class _Fetch:
    number: int
    info: MessageInfo
    top_lines: int | None  # None: RETR


class Pop3Session:
    """One POP3 session. Not thread-safe; one transport drives it."""

    def __init__(
        self,
        *,
        hostname: str = "localhost",
        tls_active: bool = False,
        tls_available: bool = False,
        allow_plaintext_auth: bool = False,
        max_errors: int = 10,
        login_delay: int = 0,
        implementation: str = "Merpati",
    ) -> None:
        self.state = State.AUTHORIZATION
        self.hostname = hostname
        self.tls_active = tls_active
        self.tls_available = tls_available
        self.allow_plaintext_auth = allow_plaintext_auth
        self.max_errors = max_errors
        self.login_delay = login_delay
        self.implementation = implementation
        self.errors = 0
        self.utf8 = False
        self.account: str | None = None
        self.maildrop: Maildrop | None = None
        self._reader = LineReader(COMMAND_LINE_LIMIT)
        self._out: deque[Action] = deque()
        self._waiting: str | None = None
        self._user: str | None = None
        self._sasl: sasl.SaslExchange | None = None
        self._authzid = ""
        self._fetch: _Fetch | None = None
        self._seen_marked: set[int] = set()
        self._closed = False

    # ---- driving -------------------------------------------------------------------------

    def greeting(self) -> bytes:
        return ok(f"{self.hostname} POP3 server ready")

    def receive(self, data: bytes) -> None:
        if not self._closed:
            self._reader.feed(data)

    def next_action(self) -> Action | NeedData:
        while True:
            if self._out:
                action = self._out.popleft()
                if isinstance(action, Close):
                    self._out.clear()
                    self._out.append(action)  # stays the answer from now on
                return action
            if self._waiting is not None:
                raise SessionError(f"waiting for the transport to finish: {self._waiting}")
            item = self._reader.next_line()
            if item is None:
                return NEED_DATA
            if isinstance(item, LineTooLong):
                self._line_too_long(item)
            elif self._sasl is not None:
                self._sasl_response(item)
            else:
                self._command(item)

    def timed_out(self) -> None:
        """rfc1939:3 the autologout timer ran out: close without entering UPDATE."""
        self._reply(err("idle for too long, closing connection"))
        self._close("idle timeout")

    def shutting_down(self) -> None:
        """The server is stopping while the client is idle: close without entering UPDATE
        (nothing is deleted), telling the client to come back (rfc3206:4 SYS/TEMP)."""
        self._reply(err("server shutting down, try again shortly", RespCode.SYS_TEMP))
        self._close("shutdown")

    # ---- helpers -------------------------------------------------------------------------

    def _reply(self, data: bytes) -> None:
        self._out.append(Send(data))

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self._closed = True
        self._reader.clear()
        self._out.append(Close(reason))

    def _fail(self, text: str, code: RespCode | None = None) -> None:
        """A -ERR caused by the client's input; too many of them end the session."""
        self.errors += 1
        if self.errors >= self.max_errors:
            self._reply(err("too many errors, closing connection"))
            self._close("too many errors")
            return
        self._reply(err(text, code))

    def _wait(self, what: str, action: Action) -> None:
        self._waiting = what
        self._out.append(action)

    def _done(self, what: str) -> None:
        if self._waiting != what:
            raise SessionError(f"{what} completed while waiting for {self._waiting}")
        self._waiting = None

    @property
    def auth_allowed(self) -> bool:
        """rfc2595:4 no credentials in the clear unless the operator allows it (tests)."""
        return self.tls_active or self.allow_plaintext_auth

    # ---- input ---------------------------------------------------------------------------

    def _line_too_long(self, item: LineTooLong) -> None:
        if self._sasl is not None:
            self._end_sasl()
            self._fail("authentication response too long")
            return
        self._fail(f"line too long (the limit is {item.limit} octets)")

    def _command(self, line: bytes) -> None:
        try:
            cmd = parse_command(line)
        except CommandError as exc:
            self._user = None
            self._fail(str(exc))
            return
        if cmd.name not in ALLOWED[self.state]:
            self._user = None
            self._fail(f"{cmd.name} is not allowed in the {self.state.value} state")
            return
        if cmd.name != "PASS":
            self._user = None  # rfc1939:7 PASS only straight after a successful USER
        _HANDLERS[cmd.name](self, cmd)

    # ---- AUTHORIZATION -------------------------------------------------------------------

    def _capa(self, cmd: Command) -> None:
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.auth_allowed:
                caps.append(b"USER")
                caps.append(b"SASL " + " ".join(sasl.MECHANISMS).encode("ascii"))
            if self.tls_available and not self.tls_active:
                caps.append(b"STLS")
        if self.login_delay > 0:
            caps.append(b"LOGIN-DELAY %d" % self.login_delay)  # rfc2449:6.5
        caps.append(b"EXPIRE NEVER")  # rfc2449:6.7 we never delete mail on our own
        caps.append(b"UTF8 USER")  # rfc6856:2 UTF-8 user names and passwords
        caps.append(b"IMPLEMENTATION " + self.implementation.encode("ascii", "replace"))
        self._reply(replies.multiline(ok("capability list follows"), caps))

    def _stls(self, cmd: Command) -> None:
        if self.tls_active:
            self._fail("TLS is already active")
            return
        if not self.tls_available:
            self._fail("TLS is not available")
            return
        self._reply(ok("begin TLS negotiation"))
        # rfc2595:4 anything pipelined after STLS was sent in the clear: discard it.
        self._reader.clear()
        self._wait("tls", StartTLS())

    def tls_started(self) -> None:
        self._done("tls")
        self._reader.clear()
        self.tls_active = True
        self._user = None

    def tls_failed(self) -> None:
        self._done("tls")
        self._close("TLS handshake failed")

    def _utf8(self, cmd: Command) -> None:
        # rfc6856:2 messages are served as stored; UTF8 only tells us the client copes.
        self.utf8 = True
        self._reply(ok("UTF8 enabled"))

    def _user_cmd(self, cmd: Command) -> None:
        if not self.auth_allowed:
            self._fail("plaintext authentication is not allowed here: use STLS first")
            return
        try:
            self._user = cmd.args[0].decode("utf-8")
        except UnicodeDecodeError:
            self._fail("user name is not valid UTF-8")
            return
        # The same answer for every name: whether an account exists is not told.
        self._reply(ok("send PASS"))

    def _pass(self, cmd: Command) -> None:
        user = self._user
        self._user = None
        if not self.auth_allowed:
            self._fail("plaintext authentication is not allowed here: use STLS first")
            return
        if user is None:
            self._fail("USER first")
            return
        try:
            password = cmd.args[0].decode("utf-8")
        except UnicodeDecodeError:
            self._fail("invalid user name or password", RespCode.AUTH)
            return
        self._authzid = ""
        self._wait("verify", Verify(user, password))

    def _auth(self, cmd: Command) -> None:
        if not self.auth_allowed:
            self._fail("plaintext authentication is not allowed here: use STLS first")
            return
        if not cmd.args:
            # The pre-rfc5034 listing that some clients (fetchmail, Outlook) still probe with.
            mechs = [m.encode("ascii") for m in sasl.MECHANISMS]
            self._reply(replies.multiline(ok("SASL mechanisms follow"), mechs))
            return
        mechanism = cmd.args[0].decode("ascii", "replace").upper()
        initial = cmd.args[1] if len(cmd.args) > 1 else None
        try:
            self._sasl = sasl.start(mechanism, initial)
        except sasl.UnknownMechanism:
            self._fail("unsupported authentication mechanism")
            return
        except sasl.SaslMalformed:
            self._fail("malformed initial response")
            return
        self._reader.limit = SASL_LINE_LIMIT
        self._sasl_step(None)

    def _sasl_response(self, line: bytes) -> None:
        self._sasl_step(line)

    def _sasl_step(self, response: bytes | None) -> None:
        exchange = self._sasl
        if exchange is None:
            raise SessionError("no SASL exchange in progress")
        try:
            result = exchange.step(response)
        except sasl.SaslCancelled:
            self._end_sasl()
            self._fail("authentication cancelled")
            return
        except sasl.SaslMalformed:
            self._end_sasl()
            self._fail("malformed authentication response")
            return
        if isinstance(result, sasl.Challenge):
            self._reply(b"+ " + result.b64 + b"\r\n")
            return
        self._end_sasl()
        self._authzid = result.authzid
        self._wait("verify", Verify(result.authcid, result.password))

    def _end_sasl(self) -> None:
        self._sasl = None
        self._reader.limit = COMMAND_LINE_LIMIT

    def verified(self, account: str | None) -> None:
        """The answer to Verify: the canonical account, or None when the check failed."""
        self._done("verify")
        authzid, self._authzid = self._authzid, ""
        if account is not None and authzid and not _same_account(authzid, account):
            account = None  # rfc4616:2 we do not let one user act as another
        if account is None:
            self._fail("invalid user name or password", RespCode.AUTH)
            return
        self._wait("open", OpenMaildrop(account))

    def maildrop_opened(self, account: str, messages: list[MessageInfo]) -> None:
        self._done("open")
        self.account = account
        self.maildrop = Maildrop(messages)
        self.state = State.TRANSACTION
        count, size = self.maildrop.stat()
        self._reply(ok(f"{account} has {count} messages ({size} octets)"))

    def maildrop_in_use(self) -> None:
        """rfc2449:8.1.2 another session holds this maildrop."""
        self._done("open")
        self._reply(err("maildrop is locked by another session", RespCode.IN_USE))

    def maildrop_too_soon(self) -> None:
        """rfc2449:8.1.1 the account logged in less than LOGIN-DELAY seconds ago."""
        self._done("open")
        self._reply(err(f"wait {self.login_delay} seconds between logins", RespCode.LOGIN_DELAY))

    def maildrop_failed(self) -> None:
        self._done("open")
        self._reply(err("cannot open the maildrop, try again later", RespCode.SYS_TEMP))

    # ---- TRANSACTION ---------------------------------------------------------------------

    def _drop(self) -> Maildrop:
        if self.maildrop is None:
            raise SessionError("no maildrop in the TRANSACTION state")
        return self.maildrop

    def _lookup(self, arg: bytes) -> tuple[int, MessageInfo] | None:
        try:
            number = parse_msgnum(arg)
            return number, self._drop().get(number)
        except (CommandError, NoSuchMessageNumber) as exc:
            self._fail(str(exc))
            return None

    def _stat(self, cmd: Command) -> None:
        count, size = self._drop().stat()
        self._reply(ok(f"{count} {size}"))

    def _list(self, cmd: Command) -> None:
        if cmd.args:
            found = self._lookup(cmd.args[0])
            if found is not None:
                self._reply(ok(f"{found[0]} {found[1].size}"))
            return
        drop = self._drop()
        count, size = drop.stat()
        lines = [f"{n} {info.size}".encode("ascii") for n, info in drop.live()]
        self._reply(replies.multiline(ok(f"{count} messages ({size} octets)"), lines))

    def _uidl(self, cmd: Command) -> None:
        if cmd.args:
            found = self._lookup(cmd.args[0])
            if found is not None:
                self._reply(ok(f"{found[0]} {found[1].uidl}"))
            return
        lines = [f"{n} {info.uidl}".encode("ascii") for n, info in self._drop().live()]
        self._reply(replies.multiline(ok("unique-id listing follows"), lines))

    def _retr(self, cmd: Command) -> None:
        found = self._lookup(cmd.args[0])
        if found is not None:
            self._fetch = _Fetch(found[0], found[1], None)
            self._wait("fetch", FetchMessage(found[1].uid, whole=True, number=found[0]))

    def _top(self, cmd: Command) -> None:
        try:
            lines = parse_count(cmd.args[1])
        except CommandError as exc:
            self._fail(str(exc))
            return
        found = self._lookup(cmd.args[0])
        if found is not None:
            self._fetch = _Fetch(found[0], found[1], lines)
            self._wait("fetch", FetchMessage(found[1].uid, whole=False, number=found[0]))

    def message_fetched(self, data: bytes | None) -> None:
        """The answer to FetchMessage: the stored bytes, or None if the message is gone
        (expunged through IMAP since login)."""
        self._done("fetch")
        fetch, self._fetch = self._fetch, None
        if fetch is None:
            raise SessionError("message_fetched without a fetch")
        if data is None:
            self._reply(err(f"message {fetch.number} no longer exists"))
            return
        if fetch.top_lines is None:
            self._reply(replies.message_response(data))
            uid = fetch.info.uid
            if "\\Seen" not in fetch.info.flags and uid not in self._seen_marked:
                self._seen_marked.add(uid)
                self._out.append(MarkSeen(uid))
        else:
            self._reply(replies.top_of_message(data, fetch.top_lines))

    def message_unreadable(self) -> None:
        """The other answer to FetchMessage: the store failed to read it (try later)."""
        self._done("fetch")
        fetch, self._fetch = self._fetch, None
        number = fetch.number if fetch else 0
        self._reply(err(f"cannot read message {number} now, try again later", RespCode.SYS_TEMP))

    def _dele(self, cmd: Command) -> None:
        found = self._lookup(cmd.args[0])
        if found is not None:
            self._drop().delete(found[0])  # rfc1939:5 only marked; removed in UPDATE
            self._reply(ok(f"message {found[0]} deleted"))

    def _noop(self, cmd: Command) -> None:
        self._reply(ok())

    def _rset(self, cmd: Command) -> None:
        drop = self._drop()
        drop.reset()
        count, size = drop.stat()
        self._reply(ok(f"maildrop has {count} messages ({size} octets)"))

    def _quit(self, cmd: Command) -> None:
        if self.state is State.AUTHORIZATION:
            self._reply(ok(f"{self.hostname} POP3 server signing off"))
            self._close("quit")
            return
        # rfc1939:6 QUIT from TRANSACTION enters UPDATE: only now are marked messages removed.
        self.state = State.UPDATE
        uids = self._drop().deleted_uids()
        if not uids:
            self._reply(ok(f"{self.hostname} POP3 server signing off"))
            self._close("quit")
            return
        self._wait("commit", Commit(self.account or "", uids))

    def committed(self, removed: int) -> None:
        self._done("commit")
        wanted = len(self._drop().deleted_uids())
        if removed >= wanted:
            self._reply(ok(f"{self.hostname} POP3 server signing off ({removed} deleted)"))
        else:
            self._reply(err("some deleted messages not removed", RespCode.SYS_TEMP))
        self._close("quit")

    def commit_failed(self) -> None:
        self._done("commit")
        self._reply(err("some deleted messages not removed", RespCode.SYS_TEMP))
        self._close("quit")


def _same_account(authzid: str, account: str) -> bool:
    try:
        return canonical_address(authzid) == account
    except AddressError:
        return False


_HANDLERS: Final = {
    "USER": Pop3Session._user_cmd,
    "PASS": Pop3Session._pass,
    "AUTH": Pop3Session._auth,
    "CAPA": Pop3Session._capa,
    "STLS": Pop3Session._stls,
    "UTF8": Pop3Session._utf8,
    "QUIT": Pop3Session._quit,
    "STAT": Pop3Session._stat,
    "LIST": Pop3Session._list,
    "RETR": Pop3Session._retr,
    "DELE": Pop3Session._dele,
    "NOOP": Pop3Session._noop,
    "RSET": Pop3Session._rset,
    "TOP": Pop3Session._top,
    "UIDL": Pop3Session._uidl,
}
