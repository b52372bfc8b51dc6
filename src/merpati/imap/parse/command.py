"""The top-level rule: one complete command (rfc9051:9 command) -> a ``commands`` object.

Dispatch is a table from command name to the rule for its arguments. Parsing knows nothing of
session state: whether a command is allowed now is the session's table (``session.ALLOWED``).
"""

from __future__ import annotations

from collections.abc import Callable

from merpati.imap import commands as c
from merpati.imap.parse.atoms import atom, number64, nz_number, tag
from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError
from merpati.imap.parse.dates import date_time
from merpati.imap.parse.fetchatt import fetch_atts
from merpati.imap.parse.flags import flag_list, store_flags
from merpati.imap.parse.lists import atom_list, id_params, list_mailbox, paren_list
from merpati.imap.parse.searchkey import search_program
from merpati.imap.parse.seqset import SequenceSet, sequence_set
from merpati.imap.parse.strings import astring, literal

Rule = Callable[[Cursor, bytes, str], c.Command]

NO_ARGS = frozenset(
    {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
     "IDLE", "NAMESPACE"}
)  # fmt: skip
STATUS_ATTS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "HIGHESTMODSEQ",
     "DELETED"}
)  # fmt: skip


def parse_tag(buf: bytes) -> bytes | None:
    """The command's tag if the line starts with a valid one (for error replies)."""
    cur = Cursor(buf)
    try:
        t = tag(cur)
    except ParseError:
        return None
    return t if cur.peek() in (b" ", b"") else None


def parse_command(buf: bytes) -> c.Command:
    """``buf`` is a command without its final CRLF. Raises ParseError (tag known or not)."""
    cur = Cursor(buf)
    t = tag(cur)
    cur.sp()
    name = atom(cur).upper().decode("ascii")
    if name == "UID":
        cur.sp()
        sub = atom(cur).upper().decode("ascii")
        rule = _UID_RULES.get(sub)
        if rule is None:
            raise ParseError("unknown UID command")
        cmd = rule(cur, t, sub)
    elif name in NO_ARGS:
        cmd = c.Command(t, name)
    else:
        rule = _RULES.get(name)
        if rule is None:
            raise ParseError("unknown command")
        cmd = rule(cur, t, name)
    cur.end()
    return cmd


def _authenticate(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    mech = atom(cur).upper().decode("ascii")
    initial = None
    if cur.accept(b" "):
        initial = _b64_or_eq(cur)
    return c.Authenticate(t, name, mech, initial)


def _b64_or_eq(cur: Cursor) -> bytes:
    buf = cur.buf
    start = i = cur.pos
    while i < len(buf) and (buf[i : i + 1].isalnum() or buf[i] in b"+/="):
        i += 1
    if i == start:
        raise ParseError("bad initial response")
    cur.pos = i
    return buf[start:i]


def _login(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    user = astring(cur)
    cur.sp()
    return c.Login(t, name, user, astring(cur))


def _enable(cur: Cursor, t: bytes, name: str) -> c.Command:
    caps = []
    while cur.accept(b" "):
        caps.append(atom(cur).upper().decode("ascii"))
        if len(caps) > 50:
            raise LimitExceeded("too many capabilities")
    if not caps:
        raise ParseError("ENABLE needs a capability")
    return c.Enable(t, name, tuple(caps))


def _id(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    return c.Id(t, name, id_params(cur))


def _select(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    mbox = astring(cur)
    condstore = False
    qresync: c.Qresync | None = None
    if cur.accept(b" "):
        # rfc4466:2.4 select-params: CONDSTORE (rfc7162:3.1.8), QRESYNC (rfc7162:3.2.5)
        cur.expect(b"(")
        while True:
            param = atom(cur).upper()
            if param == b"CONDSTORE":
                condstore = True
            elif param == b"QRESYNC" and qresync is None:
                cur.sp()
                qresync = _qresync_param(cur)
            else:
                raise ParseError("unknown SELECT parameter")
            if cur.accept(b")"):
                break
            cur.sp()
    return c.Select(t, name, mbox, condstore, qresync)


def _qresync_param(cur: Cursor) -> c.Qresync:
    cur.expect(b"(")
    uidvalidity = nz_number(cur)
    cur.sp()
    modseq = number64(cur)
    known: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None
    if cur.accept(b" ") and cur.peek() != b"(":
        known = _no_saved(sequence_set(cur))
        cur.accept(b" ")
    if cur.peek() == b"(":
        # rfc7162:3.2.5 seq-match-data = "(" known-sequence-set SP known-uid-set ")", where
        # "*" is not allowed
        cur.pos += 1
        seqs = _no_saved(sequence_set(cur))
        cur.sp()
        uids = _no_saved(sequence_set(cur))
        cur.expect(b")")
        if any(None in r for r in seqs.ranges + uids.ranges):
            raise ParseError("* is not allowed in sequence-match data")
        if _count(seqs) != _count(uids):
            raise ParseError("the sequence-match sets differ in size")
        seq_match = (seqs, uids)
    cur.expect(b")")
    return c.Qresync(uidvalidity, modseq, known, seq_match)


def _count(seqset: SequenceSet) -> int:
    return sum(abs((b or 0) - (a or 0)) + 1 for a, b in seqset.ranges)


def _no_saved(seqset: SequenceSet) -> SequenceSet:
    if seqset.saved:
        raise ParseError("$ is not allowed here")
    return seqset


def _one_mailbox(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    mbox = astring(cur)
    use: tuple[str, ...] = ()
    if name == "CREATE" and cur.accept(b" "):
        # rfc6154:3 create-param "USE" SP "(" [use-attr *(SP use-attr)] ")"
        cur.expect(b"(")
        cur.expect(b"USE ")
        use = tuple("\\" + a.removeprefix("\\").capitalize() for a in _use_list(cur))
        cur.expect(b")")
    return c.MailboxCommand(t, name, mbox, use)


def _use_list(cur: Cursor) -> list[str]:
    def one(x: Cursor) -> str:
        x.expect(b"\\")
        return atom(x).decode("ascii").upper()

    return paren_list(cur, one)


def _rename(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    old = astring(cur)
    cur.sp()
    return c.Rename(t, name, old, astring(cur))


def _list(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    select_opts: tuple[str, ...] = ()
    extended = False
    if name == "LIST" and cur.peek() == b"(":
        select_opts = atom_list(cur)
        extended = True
        cur.sp()
    ref = astring(cur) if cur.peek() != b"{" else literal(cur)
    cur.sp()
    if name == "LIST" and cur.peek() == b"(":
        patterns = tuple(paren_list(cur, list_mailbox, allow_empty=False))
        extended = True
    else:
        patterns = (list_mailbox(cur),)
    return_opts: list[str] = []
    status_atts: tuple[str, ...] = ()
    if name == "LIST" and cur.accept(b" "):
        extended = True
        cur.expect(b"RETURN ")
        cur.expect(b"(")
        while not cur.accept(b")"):
            if return_opts:
                cur.sp()
            opt = atom(cur).upper().decode("ascii")
            if opt == "STATUS":
                cur.sp()
                status_atts = _status_atts(cur)
            return_opts.append(opt)
            if len(return_opts) > 20:
                raise LimitExceeded("too many RETURN options")
    return c.ListCommand(
        t, name, ref, patterns, select_opts, tuple(return_opts), status_atts, extended
    )


def _status_atts(cur: Cursor) -> tuple[str, ...]:
    atts = atom_list(cur, allow_empty=False)
    for a in atts:
        if a not in STATUS_ATTS:
            raise ParseError("unknown STATUS attribute")
    return atts


def _status(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    mbox = astring(cur)
    cur.sp()
    return c.Status(t, name, mbox, _status_atts(cur))


def _append(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    mbox = astring(cur)
    cur.sp()
    flags: tuple[str, ...] = ()
    when = None
    if cur.peek() == b"(":
        flags = flag_list(cur)
        cur.sp()
    if cur.peek() == b'"':
        when = date_time(cur)
        cur.sp()
    if cur.startswith_ci(b"UTF8 ("):
        # rfc6855:4 append-data "UTF8" SP "(" literal8 ")"
        cur.pos += 6
        data = literal(cur, allow_binary=True)
        cur.expect(b")")
        return c.Append(t, name, mbox, flags, when, data, True)
    binary = cur.peek() == b"~"
    data = literal(cur, allow_binary=True)
    return c.Append(t, name, mbox, flags, when, data, binary)


def _getquota(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    return c.GetQuota(t, name, astring(cur))


def _search(cur: Cursor, t: bytes, name: str, uid: bool = False) -> c.Command:
    cur.sp()
    return c.Search(t, name, uid, search_program(cur))


def _fetch(cur: Cursor, t: bytes, name: str, uid: bool = False) -> c.Command:
    cur.sp()
    seqset = sequence_set(cur)
    cur.sp()
    atts = fetch_atts(cur)
    changedsince = None
    vanished = False
    if cur.accept(b" ("):
        # rfc7162:3.1.4.1 CHANGEDSINCE, rfc7162:3.2.6 VANISHED
        while True:
            word = atom(cur).upper()
            if word == b"CHANGEDSINCE" and changedsince is None:
                cur.sp()
                changedsince = number64(cur)
            elif word == b"VANISHED" and not vanished:
                vanished = True
            else:
                raise ParseError("unknown FETCH modifier")
            if cur.accept(b")"):
                break
            cur.sp()
        if vanished and (changedsince is None or not uid):
            raise ParseError("VANISHED needs UID FETCH and CHANGEDSINCE")
    return c.Fetch(t, name, uid, seqset, atts, changedsince, vanished)


def _store(cur: Cursor, t: bytes, name: str, uid: bool = False) -> c.Command:
    cur.sp()
    seqset = sequence_set(cur)
    cur.sp()
    unchanged = None
    if cur.accept(b"("):
        cur.expect(b"UNCHANGEDSINCE ")
        unchanged = number64(cur)
        cur.expect(b")")
        cur.sp()
    mode = ""
    if cur.peek() in (b"+", b"-"):
        mode = cur.take(1).decode()
    cur.expect(b"FLAGS")
    silent = cur.accept(b".SILENT")
    cur.sp()
    return c.Store(t, name, uid, seqset, mode, silent, store_flags(cur), unchanged)


def _copymove(cur: Cursor, t: bytes, name: str, uid: bool = False) -> c.Command:
    cur.sp()
    seqset = sequence_set(cur)
    cur.sp()
    return c.CopyMove(t, name, uid, seqset, astring(cur))


def _uid_expunge(cur: Cursor, t: bytes, name: str) -> c.Command:
    cur.sp()
    return c.UidExpunge(t, "UID EXPUNGE", sequence_set(cur))


_RULES: dict[str, Rule] = {
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _one_mailbox,
    "DELETE": _one_mailbox,
    "SUBSCRIBE": _one_mailbox,
    "UNSUBSCRIBE": _one_mailbox,
    "GETQUOTAROOT": _one_mailbox,
    "GETQUOTA": _getquota,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copymove,
    "MOVE": _copymove,
}
_UID_RULES: dict[str, Rule] = {
    "SEARCH": lambda cur, t, n: _search(cur, t, n, True),
    "FETCH": lambda cur, t, n: _fetch(cur, t, n, True),
    "STORE": lambda cur, t, n: _store(cur, t, n, True),
    "COPY": lambda cur, t, n: _copymove(cur, t, n, True),
    "MOVE": lambda cur, t, n: _copymove(cur, t, n, True),
    "EXPUNGE": _uid_expunge,
}
