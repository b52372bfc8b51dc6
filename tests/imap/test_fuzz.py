"""Property-based fuzzing of the parser and the session (hypothesis).

Invariants: the parser either returns a command or raises ParseError; the session never lets
an exception escape, never answers with an internal error, answers a command it cannot parse
with a tagged BAD (or BYE; NO [LIMIT] when it only goes past a parser bound), and then the
mailbox is unchanged.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sansio import Client, append, run

from merpati.imap import commands as c
from merpati.imap.framing import CommandReady, Framer
from merpati.imap.parse import LimitExceeded, ParseError
from merpati.imap.parse.command import parse_command
from merpati.imap.session import SessionConfig
from merpati.mailstore.memory import MemoryMailStore

A = "alice@example.org"
WORDS = [
    "NOOP", "CAPABILITY", "LOGIN", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "LIST",
    "LSUB", "STATUS", "APPEND", "FETCH", "STORE", "COPY", "MOVE", "SEARCH", "UID", "EXPUNGE",
    "CLOSE", "UNSELECT", "ENABLE", "ID", "IDLE", "GETQUOTA", "GETQUOTAROOT", "AUTHENTICATE",
    "INBOX", "Trash", "FLAGS", "+FLAGS", "-FLAGS.SILENT", "BODY[", "BODY.PEEK[", "]", "HEADER",
    "TEXT", "MIME", "HEADER.FIELDS", "(", ")", "<0.5>", "1", "2", "*", "1:*", "$", "3:2,7",
    "0", "\\Seen", "\\Deleted", "\\Recent", "ALL", "OR", "NOT", "SINCE", "1-Jan-2020",
    "RETURN", "MIN", "COUNT", "CHARSET", "UTF-8", "MESSAGES", "UIDNEXT", "NIL", '"a b"',
    '"\\"', "UNCHANGEDSINCE", "CHANGEDSINCE", "MODSEQ", "BINARY[", "ENVELOPE", "RFC822",
    "BODYSTRUCTURE", "PLAIN", "CONDSTORE", "IMAP4rev2", "&AGE-", "%", "x\x00y", "\xff",
]  # fmt: skip

tokens = st.lists(st.sampled_from(WORDS), min_size=0, max_size=10)


def _line(tag: str, toks: list[str], joiner: str) -> bytes:
    return (tag + " " + joiner.join(toks)).encode("utf-8", "surrogateescape")


def snapshot(store: MemoryMailStore) -> object:
    box = store.mailbox(A)

    async def take() -> object:
        folders = await box.folders()
        out = []
        for f in folders:
            msgs = await box.messages(f.name)
            out.append((f.name, f.subscribed, f.uidnext, [(m.uid, m.flags) for m in msgs]))
        return out

    return run(take())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_parser_total_on_random_bytes(data: bytes) -> None:
    # Either it parses into a command with a tag, or it raises ParseError: nothing else.
    try:
        cmd = parse_command(data)
    except ParseError:
        return
    assert isinstance(cmd, c.Command) and cmd.tag


@settings(max_examples=400, deadline=None)
@given(tokens, st.sampled_from([" ", "", "  "]))
def test_parser_total_on_token_soup(toks: list[str], joiner: str) -> None:
    try:
        cmd = parse_command(_line("a", toks, joiner))
    except ParseError:
        return
    assert isinstance(cmd, c.Command) and cmd.tag


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_framer_total(data: bytes, chunk: int) -> None:
    f = Framer(100, 100)
    for i in range(0, len(data), chunk):
        f.feed(data[i : i + chunk])
        while (ev := f.next_event()) is not None:
            if isinstance(ev, CommandReady):
                assert len(ev.data) <= 300
    assert f.buffered <= 300


def _fresh(login: bool = True) -> Client:
    store = MemoryMailStore()
    append(store, A, b"Subject: one\r\n\r\nbody one\r\n")
    two = b"Subject: two\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    append(store, A, two + b"--x\r\n\r\np\r\n--x--\r\n")
    c = Client(store, config=SessionConfig(bad_commands=1000))
    if login:
        c.login()
    return c


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tokens, st.sampled_from([" ", "", "  "]), st.sampled_from(["none", "auth", "selected"]))
def test_session_rejects_malformed_without_change(toks: list[str], joiner: str, state: str) -> None:
    c = _fresh(login=state != "none")
    if state == "selected":
        c.select()
    line = _line("z", toks, joiner).replace(b"\r", b"").replace(b"\n", b"").replace(b"{", b"(")
    before = snapshot(c.store)
    limited = False
    try:
        parsed = True
        parse_command(line)
    except LimitExceeded:
        parsed, limited = False, True
    except ParseError:
        parsed = False
    out = c.send(line + b"\r\n")
    assert b"SERVERBUG" not in out, (line, out)
    if c.session.idle_tag is not None:
        assert out.endswith(b"+ idling\r\n")
        out = c.send(b"DONE\r\n")
        assert out.endswith(b"z OK IDLE terminated\r\n")
        return
    if c.session._sasl is not None:
        out = c.send(b"*\r\n")
        assert out.endswith(b"z BAD Authentication cancelled\r\n")
        return
    last = out.rstrip(b"\r\n").split(b"\r\n")[-1]
    assert last.startswith((b"z OK", b"z NO", b"z BAD", b"* BAD", b"* BYE")), (line, out)
    if limited:  # well-formed so far but past a parser bound: NO [LIMIT] (rfc5530:3)
        assert last.startswith((b"z NO [LIMIT]", b"* NO [LIMIT]")), (line, out)
        assert snapshot(c.store) == before
    elif not parsed:
        assert last.startswith((b"z BAD", b"* BAD", b"* BYE")), (line, out)
        assert snapshot(c.store) == before
