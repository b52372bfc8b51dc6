"""SELECT/EXAMINE (rfc9051:6.3.2-3, rfc7162:3.1.8 CONDSTORE), CLOSE, UNSELECT (rfc3691),
EXPUNGE and UID EXPUNGE (rfc4315:2.1).

SELECT builds the session's ``SelectedView`` from one snapshot of the folder; its responses
follow rfc9051:6.3.2 (FLAGS, EXISTS, LIST, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY) plus RECENT and
UNSEEN for IMAP4rev1 clients (rfc3501:6.3.1) and HIGHESTMODSEQ (rfc7162:3.1.8).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap import qresync, wire
from merpati.imap.responses import Result, bad, no, ok
from merpati.imap.view import FlagFormatter, SelectedView, expunge_lines
from merpati.mailstore.api import MAX_FOLDER_KEYWORDS, SYSTEM_FLAGS

if TYPE_CHECKING:
    from merpati.imap.session import Session

MAX_KEYWORDS_SHOWN = 200
_FLAGS = operator.itemgetter(2)  # MessageInfo.flags


async def select(s: Session, cmd: c.Command) -> Result:
    from merpati.imap.session import State

    assert isinstance(cmd, c.Select) and s.mailbox is not None
    if s.view is not None:
        # rfc9051:6.3.2 the previous mailbox is closed without expunging, then CLOSED.
        s.view = None
        s.state = State.AUTHENTICATED
        s.write(b"* OK [CLOSED] Previous mailbox closed\r\n")
    if cmd.qresync is not None and not s.qresync:
        raise bad("QRESYNC must be enabled first")  # rfc7162:3.2.5
    if cmd.condstore:
        s.condstore = True
    name = s.decode_name(cmd.mailbox)
    box = s.mailbox
    info = await box.folder(name)
    messages = await box.message_map(info.name)
    readonly = cmd.name == "EXAMINE"
    view = SelectedView(
        info.name, readonly, messages, info.highestmodseq, info.recent, info.uidvalidity
    )
    keywords: set[str] = set()
    for flagset in set(map(_FLAGS, messages.values())):  # few distinct sets, even in huge ones
        keywords.update(f for f in flagset if not f.startswith("\\"))
        if len(keywords) > MAX_KEYWORDS_SHOWN:
            break
    first_unseen = 0
    if not s.rev2 and info.unseen:  # the store's count spares a scan when all are seen
        first_unseen = next(
            (seq for seq, m in enumerate(messages.values(), 1) if "\\Seen" not in m.flags), 0
        )
    flags = FlagFormatter()(frozenset(SYSTEM_FLAGS | keywords))
    s.write(b"* FLAGS " + flags + b"\r\n")
    s.write(b"* %d EXISTS\r\n" % view.exists)
    if not s.rev2:
        s.write(b"* %d RECENT\r\n" % len(view.recent))
        if first_unseen:
            s.write(b"* OK [UNSEEN %d] First unseen message\r\n" % first_unseen)
    else:
        encoded = wire.astring(s.encode_name(info.name), True)
        s.write(b'* LIST () "/" ' + encoded + b"\r\n")
    if readonly:
        s.write(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
    else:
        # rfc9051:7.1 "\\*": new keywords can be created; not once the folder is full
        perm = flags if len(keywords) >= MAX_FOLDER_KEYWORDS else flags[:-1] + b" \\*)"
        s.write(b"* OK [PERMANENTFLAGS " + perm + b"] Flags permitted\r\n")
    s.write(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % info.uidvalidity)
    s.write(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % info.uidnext)
    s.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % info.highestmodseq)
    s.view = view
    s.state = State.SELECTED
    if cmd.qresync is not None and cmd.qresync.uidvalidity == info.uidvalidity:
        await _resync(s, view, cmd.qresync, info.uidnext)
    code = b"READ-ONLY" if readonly else b"READ-WRITE"
    return ok(f"{cmd.name} completed", code)


async def _resync(s: Session, view: SelectedView, q: c.Qresync, uidnext: int) -> None:
    """rfc7162:3.2.5.1 what changed since the client's MODSEQ: VANISHED (EARLIER) for the
    expunged UIDs it may know (see ``merpati.imap.qresync``), then FETCH (UID FLAGS MODSEQ) for
    the changed messages. Sent after the OK [HIGHESTMODSEQ] and before the tagged OK."""
    assert s.mailbox is not None
    above = 0 if q.seq_match is None else qresync.matched_uid(q.seq_match, view.seq_of)
    changes = await s.mailbox.changes_since(view.folder, q.modseq)
    gone = qresync.vanished_earlier(changes, q.modseq, q.known_uids, view.uids, uidnext, above)
    if gone:
        s.write(b"* VANISHED (EARLIER) " + qresync.ranges_bytes(gone) + b"\r\n")
    for m in changes.changed:
        seq = view.seq_of(m.uid)
        mine = view.info.get(m.uid)
        if seq is None or mine is None or mine.modseq <= q.modseq:
            continue
        flags = view.fmt(mine.flags, not s.rev2 and m.uid in view.recent)
        s.write(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (seq, m.uid, flags, mine.modseq))


async def close(s: Session, cmd: c.Command) -> Result:
    from merpati.imap.session import State

    view, box = s.view, s.mailbox
    assert view is not None and box is not None
    s.view = None
    s.state = State.AUTHENTICATED
    if cmd.name == "CLOSE" and not view.readonly:
        # rfc9051:6.4.1 expunge silently: no EXPUNGE responses
        await box.expunge(view.folder)
    return ok(f"{cmd.name} completed")


async def expunge(s: Session, cmd: c.Command) -> Result:
    view, box = s.view, s.mailbox
    assert view is not None and box is not None
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    uids: list[int] | None = None
    if isinstance(cmd, c.UidExpunge):
        uids = [uid for _, uid in s.resolve(cmd.seqset, True)]
        if not uids:
            return ok("UID EXPUNGE completed")
    gone = await box.expunge(view.folder, uids)
    s.write(expunge_lines(view.remove(gone), s.qresync))
    return ok(f"{cmd.name} completed")
