"""SEARCH and UID SEARCH (rfc9051:6.4.4) with CHARSET, ESEARCH RETURN options (rfc4731),
SAVE (rfc5182) and MODSEQ (rfc7162:3.1.5). IMAP4rev2 sessions get ESEARCH responses
(rfc9051:7.3.4); rev1 sessions get SEARCH unless they asked for RETURN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.parse.seqset import uid_set
from merpati.imap.responses import Result, no, ok
from merpati.imap.search import Candidate, matches, needs
from merpati.mailstore.api import NoSuchMessage

if TYPE_CHECKING:
    from merpati.imap.session import Session

CHARSETS = ("UTF-8", "US-ASCII")


async def search(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Search) and s.view is not None and s.mailbox is not None
    view, box = s.view, s.mailbox
    prog = cmd.program
    if prog.charset is not None and prog.charset not in CHARSETS:
        raise no("Unsupported charset", b"BADCHARSET (UTF-8 US-ASCII)")
    if prog.uses_modseq:
        s.condstore = True
    need_struct, need_data = needs(prog.key)
    largest_seq = len(view.uids)
    largest_uid = view.uids[-1] if view.uids else 0
    saved = set(s.saved_uids)
    found: list[tuple[int, int, int]] = []  # (seq, uid, modseq)
    key = prog.key
    # Without content keys, one Candidate is reused (100,000 messages, no allocation each).
    reused = Candidate(0, 0, view.info[view.uids[0]], False) if view.uids else None
    for seq, uid in enumerate(list(view.uids), 1):
        info = view.info[uid]
        if need_struct or need_data:
            if uid in view.pending_expunge:
                continue
            cand = Candidate(seq, uid, info, uid in view.recent)
            try:
                cand.structure = await box.structure(view.folder, uid)
                if need_data:
                    cand.data = await box.read(view.folder, uid)
            except NoSuchMessage:
                continue
        else:
            assert reused is not None
            cand = reused
            cand.seq, cand.uid, cand.info, cand.recent = seq, uid, info, uid in view.recent
        if matches(key, cand, largest_seq, largest_uid, saved):
            found.append((seq, uid, info.modseq))
    numbers = [uid if cmd.uid else seq for seq, uid, _ in found]
    modseq = max((m for _, _, m in found), default=0)
    returns = prog.returns
    if returns is None and s.rev2:
        returns = ()
    name = f"{'UID ' if cmd.uid else ''}SEARCH completed"
    if returns is None:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if prog.uses_modseq and found:
            line += b" (MODSEQ %d)" % modseq
        s.write(line + b"\r\n")
        return ok(name)
    opts = set(returns) or {"ALL"}
    if "SAVE" in opts:
        if opts & {"MIN", "MAX"} and not opts & {"ALL", "COUNT"}:
            keep = []
            if found and "MIN" in opts:
                keep.append(found[0][1])
            if found and "MAX" in opts:
                keep.append(found[-1][1])
            s.saved_uids = sorted(set(keep))
        else:
            s.saved_uids = [uid for _, uid, _ in found]
        opts.discard("SAVE")
        if not opts:
            return ok(name)  # rfc5182:2.1 SAVE alone gives no ESEARCH response
    parts = [b'* ESEARCH (TAG "' + cmd.tag + b'")']
    if cmd.uid:
        parts.append(b"UID")
    if numbers and "MIN" in opts:
        parts.append(b"MIN %d" % numbers[0])
    if numbers and "MAX" in opts:
        parts.append(b"MAX %d" % numbers[-1])
    if "COUNT" in opts:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in opts:
        parts.append(b"ALL " + uid_set(numbers))
    if prog.uses_modseq and found:
        parts.append(b"MODSEQ %d" % modseq)
    s.write(b" ".join(parts) + b"\r\n")
    return ok(name)
