"""SEARCH and UID SEARCH (rfc9051:6.4.4) with CHARSET, ESEARCH RETURN options (rfc4731),
SAVE (rfc5182) and MODSEQ (rfc7162:3.1.5). IMAP4rev2 sessions get ESEARCH responses
(rfc9051:7.3.4); rev1 sessions get SEARCH unless they asked for RETURN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.parse.seqset import uid_set
from merpati.imap.responses import Result, no, ok
from merpati.imap.search import Candidate, compile_key, needs, prefilter
from merpati.mailstore.api import Mailbox, NoSuchMessage
from merpati.mime.structure import MessageStructure

if TYPE_CHECKING:
    from merpati.imap.session import Session

CHARSETS = ("UTF-8", "US-ASCII")
CONTENT_BATCH = 32  # messages whose content is read concurrently


async def _load(
    box: Mailbox, folder: str, uid: int, need_data: bool
) -> tuple[MessageStructure, bytes | None] | None:
    try:
        structure = await box.structure(folder, uid)
        data = await box.read(folder, uid) if need_data else None
    except NoSuchMessage:
        return None
    return structure, data


# Messages whose structures one store call fetches during a header or body SEARCH.
STRUCTURE_BATCH = 256


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
    content = need_struct or need_data
    match = compile_key(key, largest_seq, largest_uid, saved)
    # Phase 1, metadata only: one reused Candidate (100,000 messages, no allocation each).
    undecided: list[tuple[int, int]] = []
    reused = Candidate(0, 0, view.info[view.uids[0]], False) if view.uids else None
    for seq, uid in enumerate(list(view.uids), 1):
        info = view.info[uid]
        assert reused is not None
        cand = reused
        cand.seq, cand.uid, cand.info, cand.recent = seq, uid, info, uid in view.recent
        verdict = prefilter(key, cand, largest_seq, largest_uid, saved) if content else None
        if not content:
            verdict = match(cand)
        if verdict is None:
            if uid not in view.pending_expunge:
                undecided.append((seq, uid))
        elif verdict:
            found.append((seq, uid, info.modseq))
    # Phase 2: header keys are answered from the shared field cache where it can; the rest
    # is read from the store, a batch of messages at a time.
    cache = s.field_cache
    account = s.account or ""
    if not need_data:
        missing: list[tuple[int, int]] = []
        for seq, uid in undecided:
            fields = cache.get((account, view.folder, view.uidvalidity, uid))
            if fields is None:
                missing.append((seq, uid))
                continue
            cand = Candidate(seq, uid, view.info[uid], uid in view.recent, fields=fields)
            if match(cand):
                found.append((seq, uid, cand.info.modseq))
        undecided = missing
    step = CONTENT_BATCH if need_data else STRUCTURE_BATCH
    for start in range(0, len(undecided), step):
        batch = undecided[start : start + step]
        loaded: list[tuple[MessageStructure, bytes | None] | None]
        if need_data:
            loaded = await s.gather(*[_load(box, view.folder, uid, True) for _, uid in batch])
        else:
            # Headers only: one store call for the whole batch, not one per message.
            structs = await box.structures(view.folder, [uid for _, uid in batch])
            loaded = [(structs[uid], None) if uid in structs else None for _, uid in batch]
        for (seq, uid), got in zip(batch, loaded, strict=True):
            if got is None:
                continue
            cache.put((account, view.folder, view.uidvalidity, uid), got[0].search_headers)
            cand = Candidate(seq, uid, view.info[uid], uid in view.recent, got[0], got[1])
            if match(cand):
                found.append((seq, uid, cand.info.modseq))
    found.sort()
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
