"""The sans-I/O IMAP session: bytes in, response bytes out, store calls through an injected
``Mailbox``. No sockets, no clock, no asyncio here; the transport (``server``) feeds
``receive()``, carries out STARTTLS and IDLE waits, and applies timeouts.

States and what each allows are declared once, in ``ALLOWED`` (rfc9051:3, rfc3501:3). Every
command ends in exactly one tagged response; errors from handlers, the store and our own bugs
are mapped to NO/BAD in ``_run`` and nowhere else. Untagged updates for the selected mailbox are
sent just before the tagged response, where ``view.SelectedView`` and rfc9051:7.5.1 allow.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from merpati.auth import sasl
from merpati.imap import commands as c
from merpati.imap import mutf7
from merpati.imap.framing import CommandReady, Framer, NeedContinuation, Rejected
from merpati.imap.parse import LimitExceeded, ParseError
from merpati.imap.parse.command import parse_command, parse_tag
from merpati.imap.parse.seqset import SequenceSet
from merpati.imap.responses import Refused, Result, status_line, store_error
from merpati.imap.searchcache import SearchFieldCache
from merpati.imap.view import SelectedView
from merpati.mailstore.api import Mailbox, MailStoreError, NoSuchFolder


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
_AUTH = _ANY | {
    "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
    "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "GETQUOTA", "GETQUOTAROOT",
}  # fmt: skip
_SELECTED = _AUTH | {
    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE",
    "UID SEARCH", "UID FETCH", "UID STORE", "UID COPY", "UID MOVE", "UID EXPUNGE",
}  # fmt: skip
ALLOWED: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: _ANY | {"STARTTLS", "AUTHENTICATE", "LOGIN"},
    State.AUTHENTICATED: _AUTH,
    State.SELECTED: _SELECTED,
    State.LOGOUT: frozenset(),
}
# rfc9051:7.5.1 no EXPUNGE while answering these (sequence numbers must stay put).
NO_EXPUNGE_DURING = frozenset({"FETCH", "STORE", "SEARCH"})

Verify = Callable[[str, str], Awaitable[str | None]]
OpenMailbox = Callable[[str], Mailbox]
Sink = Callable[[bytes], Awaitable[None]]
Logger = Callable[..., None]
Counter = Callable[[str, str], None]  # (command, status) for metrics
# Runs store calls concurrently (the transport passes asyncio.gather); the default awaits them
# one after the other, which keeps this module free of asyncio.
Gather = Callable[..., Awaitable[list[Any]]]


async def sequential(*aws: Awaitable[Any]) -> list[Any]:
    return [await a for a in aws]


FLUSH_AT = 256 * 1024  # hand output to the transport when this much is buffered


@dataclass(frozen=True, slots=True)
class SessionConfig:
    hostname: str = "localhost"
    max_line: int = 64 * 1024
    max_literal: int = 50 * 1000**2
    bad_commands: int = 10
    allow_plaintext_auth: bool = False
    starttls_available: bool = True


class Session:
    def __init__(
        self,
        config: SessionConfig,
        verify: Verify,
        open_mailbox: OpenMailbox,
        sink: Sink,
        *,
        tls_active: bool = False,
        log: Logger | None = None,
        preauth: str | None = None,
        count: Counter | None = None,
        gather: Gather = sequential,
        field_cache: SearchFieldCache | None = None,
    ) -> None:
        self.config = config
        self.verify = verify
        self.open_mailbox = open_mailbox
        self._sink = sink
        self.log: Logger = log or (lambda event, **kw: None)
        self.count: Counter = count or (lambda command, status: None)
        self.gather = gather
        self.field_cache = field_cache or SearchFieldCache(100_000)
        self.tls_active = tls_active
        self.framer = Framer(config.max_line, config.max_literal)
        self.state = State.NOT_AUTHENTICATED
        self.account: str | None = None
        self.mailbox: Mailbox | None = None
        self.view: SelectedView | None = None
        self.rev2 = False
        self.utf8 = False
        self.condstore = False
        self.qresync = False
        self.want_starttls = False
        self.idle_tag: bytes | None = None
        self.saved_uids: list[int] = []  # rfc5182 SEARCHRES "$"
        self.bad_count = 0
        self.auth_failures = 0
        self._sasl: tuple[bytes, sasl.SaslExchange] | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        if preauth is not None:
            self._login_done(preauth)

    # -- output ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    async def maybe_flush(self) -> None:
        if self._out_size >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            await self._sink(data)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is State.LOGOUT

    async def start(self) -> None:
        caps = " ".join(self.capabilities()).encode()
        word = b"PREAUTH" if self.state is State.AUTHENTICATED else b"OK"
        self.write(b"* " + word + b" [CAPABILITY " + caps + b"] Merpati IMAP ready\r\n")
        await self.flush()

    async def bye(self, text: str) -> None:
        """End the session from the server's side (timeout, shutdown)."""
        if not self.closed:
            self.write(b"* BYE " + text.encode() + b"\r\n")
            self.state = State.LOGOUT
        await self.flush()

    def tls_started(self) -> None:
        self.want_starttls = False
        self.tls_active = True
        self.framer.reset()  # rfc9051:6.2.1 nothing sent before the handshake is kept

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.state is State.NOT_AUTHENTICATED:
            if not self.tls_active and self.config.starttls_available:
                caps.append("STARTTLS")
            if self.tls_active or self.config.allow_plaintext_auth:
                caps += [f"AUTH={m}" for m in sasl.MECHANISMS]
            else:
                caps.append("LOGINDISABLED")  # rfc9051:6.2.3
            caps.append("SASL-IR")
        caps += [
            "LITERAL+", "ENABLE", "IDLE", "ID", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE",
            "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE",
            "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "STATUS=SIZE", "QUOTA",
            "QUOTA=RES-STORAGE", "BINARY", f"APPENDLIMIT={self.config.max_literal}",
            "UTF8=ACCEPT",
        ]  # fmt: skip
        return caps

    @property
    def login_allowed(self) -> bool:
        return self.tls_active or self.config.allow_plaintext_auth

    # -- names -------------------------------------------------------------------------------
    def decode_name(self, raw: bytes) -> str:
        """A mailbox name as the client sent it -> the store's UTF-8 name."""
        if self.utf8 or self.rev2:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused("BAD", "Mailbox name is not UTF-8") from None
        else:
            try:
                name = mutf7.decode(raw)
            except mutf7.MUTF7Error:
                raise Refused("BAD", "Mailbox name is not valid modified UTF-7") from None
        head, sep, rest = name.partition("/")
        if head.upper() == "INBOX":
            name = "INBOX" + sep + rest
        return name

    def encode_name(self, name: str) -> bytes:
        return name.encode("utf-8") if (self.utf8 or self.rev2) else mutf7.encode(name)

    # -- input -------------------------------------------------------------------------------
    async def receive(self, data: bytes) -> None:
        """Process every complete command in ``data`` (plus what was buffered)."""
        self.framer.feed(data)
        while not self.closed and not self.want_starttls:
            event = self.framer.next_event()
            if event is None:
                break
            if isinstance(event, NeedContinuation):
                self.write(b"+ Ready for literal data\r\n")
            elif isinstance(event, Rejected):
                tag = event.tag or b"*"
                if event.kind == "literal":
                    # rfc7889:3 APPENDLIMIT / rfc4469 TOOBIG
                    self.write(status_line(tag, "NO", b"TOOBIG", "Literal too large"))
                else:
                    self.write(status_line(tag, "BAD", b"TOOBIG", "Command line too long"))
                await self._count_bad()
            elif isinstance(event, CommandReady):
                await self._line(event.data)
            await self.maybe_flush()
        await self.flush()

    async def _count_bad(self) -> None:
        self.bad_count += 1
        if self.bad_count >= self.config.bad_commands:
            self.write(b"* BYE Too many invalid commands\r\n")
            self.state = State.LOGOUT

    async def _line(self, data: bytes) -> None:
        if self._sasl is not None:
            from merpati.imap.handlers.auth import sasl_continue

            await sasl_continue(self, data)
            return
        if self.idle_tag is not None:
            await self.idle_done(data)
            return
        try:
            cmd = parse_command(data)
        except LimitExceeded as exc:
            # rfc5530:3 a well-formed command past one of our bounds: NO, not a client error
            tag = parse_tag(data) or b"*"
            self.write(status_line(tag, "NO", b"LIMIT", f"Too large: {exc}"))
            return
        except ParseError as exc:
            tag = parse_tag(data) or b"*"
            self.write(status_line(tag, "BAD", None, f"Syntax error: {exc}"))
            await self._count_bad()
            return
        key = f"UID {cmd.name}" if getattr(cmd, "uid", False) else cmd.name
        if key not in ALLOWED[self.state]:
            self.write(status_line(cmd.tag, "BAD", None, f"{key} is not allowed now"))
            await self._count_bad()
            return
        await self._run(cmd)

    async def _run(self, cmd: c.Command) -> None:
        from merpati.imap.handlers import HANDLERS

        handler = HANDLERS[cmd.name]
        try:
            result = await handler(self, cmd)
        except Refused as exc:
            result = exc.result
        except MailStoreError as exc:
            code = b"TRYCREATE" if cmd.name in ("APPEND", "COPY", "MOVE") else b"NONEXISTENT"
            result = store_error(exc, code)
        except Exception as exc:  # the one boundary: log the type, never send the text
            self.log("imap.error", command=cmd.name, error=type(exc).__name__)
            result = Result("NO", b"SERVERBUG", "Internal error; the command was not done")
        if result is None:  # the handler will finish later (IDLE, AUTHENTICATE)
            return
        self.count(cmd.name, result.status)
        if result.status == "BAD":
            await self._count_bad()
        await self.finish(cmd.tag, result, cmd.name if not getattr(cmd, "uid", False) else "")

    async def finish(self, tag: bytes, result: Result, name: str = "") -> None:
        """Send the announcements allowed now, then the tagged response."""
        if self.state is State.SELECTED and name not in ("LOGOUT",):
            await self.announce(allow_expunge=name not in NO_EXPUNGE_DURING)
        if not self.closed or name == "LOGOUT":
            self.write(result.line(tag))

    async def announce(self, allow_expunge: bool = True) -> None:
        view, box = self.view, self.mailbox
        if view is None or box is None:
            return
        try:
            changes = await box.changes_since(view.folder, view.highestmodseq)
        except NoSuchFolder:
            self.write(b"* OK [CLOSED] The selected mailbox no longer exists\r\n")
            self.view = None
            self.state = State.AUTHENTICATED
            return
        view.apply(changes)
        for line in view.announcements(allow_expunge, not self.rev2, self.condstore, self.qresync):
            self.write(line)

    def resolve(self, seqset: SequenceSet, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs a sequence set names in the selected mailbox, ascending."""
        view = self.view
        assert view is not None
        if seqset.saved:  # rfc5182:2.1 "$" is the saved search result
            return list(view.select(self.saved_uids))
        if uid:
            return view.by_uid(seqset)
        if not view.seq_set_valid(seqset):
            raise Refused("BAD", "Invalid message sequence number")
        return view.by_seq(seqset)

    def resolve_spans(self, seqset: SequenceSet, uid: bool) -> list[tuple[int, list[int]]]:
        """``resolve`` as (first sequence number, consecutive UIDs) spans."""
        view = self.view
        assert view is not None
        if seqset.saved:
            return [(q, [u]) for q, u in view.select(self.saved_uids)]
        if not uid and not view.seq_set_valid(seqset):
            raise Refused("BAD", "Invalid message sequence number")
        return view.spans(seqset, uid)

    # -- authentication ----------------------------------------------------------------------
    def _login_done(self, account: str) -> None:
        self.account = account
        self.mailbox = self.open_mailbox(account)
        self.state = State.AUTHENTICATED

    # -- IDLE (rfc2177) ------------------------------------------------------------------------
    async def idle_poll(self) -> None:
        """The transport saw a change (or a timer fired) while idling."""
        if self.idle_tag is not None and self.state is State.SELECTED:
            await self.announce(allow_expunge=True)
            await self.flush()

    async def idle_done(self, data: bytes) -> None:
        tag = self.idle_tag or b"*"
        self.idle_tag = None
        if data.strip().upper() != b"DONE":
            self.write(status_line(tag, "BAD", None, "Expected DONE"))
            await self._count_bad()
            return
        await self.finish(tag, Result("OK", None, "IDLE terminated"))
