"""STORE (rfc9051:6.4.6; rfc7162:3.1.3 UNCHANGEDSINCE and MODIFIED), COPY (rfc4315 COPYUID)
and MOVE (rfc6851), with their UID forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.parse.seqset import uid_set
from merpati.imap.responses import Result, no, ok
from merpati.imap.view import expunge_lines
from merpati.mailstore.api import FlagMode

if TYPE_CHECKING:
    from merpati.imap.session import Session

_MODES = {"": FlagMode.REPLACE, "+": FlagMode.ADD, "-": FlagMode.REMOVE}


async def store(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Store) and s.view is not None and s.mailbox is not None
    view = s.view
    if view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    if cmd.unchangedsince is not None:
        s.condstore = True
    targets = s.resolve(cmd.seqset, cmd.uid)
    uids = [u for _, u in targets if u not in view.pending_expunge]
    changed, refused = await s.mailbox.store_flags(
        view.folder, uids, _MODES[cmd.mode], cmd.flags, cmd.unchangedsince
    )
    view.note_flags(changed)
    refused_set = set(refused)
    if not cmd.silent:
        rev1 = not s.rev2
        for seq, uid in targets:
            if uid in refused_set or uid in view.pending_expunge:
                continue
            info = view.info[uid]
            line = b"* %d FETCH (FLAGS %s" % (
                seq,
                view.fmt(info.flags, rev1 and uid in view.recent),
            )
            if cmd.uid:
                line += b" UID %d" % uid
            if s.condstore:
                line += b" MODSEQ (%d)" % info.modseq
            s.write(line + b")\r\n")
    elif s.condstore and cmd.unchangedsince is not None:
        # rfc7162:3.2 .SILENT still reports the new MODSEQ of changed messages
        for m in changed:
            pos = view.seq_of(m.uid)
            if pos is not None:
                uid_part = b" UID %d" % m.uid if cmd.uid else b""
                s.write(b"* %d FETCH (MODSEQ (%d)%s)\r\n" % (pos, m.modseq, uid_part))
    name = f"{'UID ' if cmd.uid else ''}STORE completed"
    if refused:
        numbers = refused if cmd.uid else [q for q, u in targets if u in refused_set]
        return ok(name, b"MODIFIED " + uid_set(sorted(numbers)))
    return ok(name)


async def copy_move(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.CopyMove) and s.view is not None and s.mailbox is not None
    view = s.view
    move = cmd.name == "MOVE"
    if move and view.readonly:
        raise no("Mailbox is read-only", b"READ-ONLY")
    dst = s.decode_name(cmd.mailbox)
    targets = s.resolve(cmd.seqset, cmd.uid)
    uids = [u for _, u in targets if u not in view.pending_expunge]
    name = f"{'UID ' if cmd.uid else ''}{cmd.name} completed"
    if not uids:
        await s.mailbox.folder(dst)  # still report a missing destination (TRYCREATE)
        return ok(name)
    if move:
        result = await s.mailbox.move(view.folder, uids, dst)
    else:
        result = await s.mailbox.copy(view.folder, uids, dst)
    if not result.pairs:
        return ok(name)
    code = b"COPYUID %d %s %s" % (
        result.uidvalidity,
        uid_set(p[0] for p in result.pairs),
        uid_set(p[1] for p in result.pairs),
    )
    if not move:
        return ok(name, code)
    # rfc6851:4.3 COPYUID in an untagged OK, then the EXPUNGEs, then the tagged OK.
    s.write(b"* OK [" + code + b"] Moved\r\n")
    s.write(expunge_lines(s.view.remove(p[0] for p in result.pairs), s.qresync))
    return ok(name)
