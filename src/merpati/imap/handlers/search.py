"""SEARCH and UID SEARCH (rfc9051:6.4.4) with CHARSET, ESEARCH RETURN options (rfc4731),
SAVE (rfc5182) and MODSEQ (rfc7162:3.1.5). IMAP4rev2 sessions get ESEARCH responses
(rfc9051:7.3.4); rev1 sessions get SEARCH unless they asked for RETURN.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.parse.searchkey import SearchKey
from merpati.imap.parse.seqset import uid_set
from merpati.imap.responses import Result, no, ok
from merpati.imap.search import (
    Candidate,
    Matcher,
    column_tests,
    column_value,
    compile_info,
    compile_key,
    compile_prefilter,
    metadata_part,
    plan,
)
from merpati.imap.searchcache import ColumnId
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


async def _content_phase(
    s: Session,
    box: Mailbox,
    undecided: list[int],
    cols: set[ColumnId],
    need_struct: bool,
    need_data: bool,
    key: SearchKey,
    match: Matcher,
    prefiltered: bool,
    found: list[int],
) -> None:
    """Phase 2: the messages (UIDs) that metadata did not decide. Header keys read the shared cache
    columns (filled here for messages not in them yet); other content keys read the store, a
    batch of messages at a time."""
    assert s.view is not None
    view = s.view
    fields = s.field_cache.folder(s.account or "", view.folder, view.uidvalidity)
    columns = [(cid, fields.column(cid)) for cid in sorted(cols)]
    if need_struct or need_data:
        todo, with_data = undecided, need_data
    else:
        if len(columns) == 1:
            col = columns[0][1]
            todo = [u for u in undecided if u not in col]
        else:
            todo = [u for u in undecided if any(u not in col for _, col in columns)]
        with_data = any(cid[0] == "h" for cid in cols)
    gone: set[int] = set()
    step = CONTENT_BATCH if with_data else STRUCTURE_BATCH
    direct = need_struct or need_data  # the key needs more than the columns: decide here
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        loaded: list[tuple[MessageStructure, bytes | None] | None]
        if with_data:
            loaded = await s.gather(*[_load(box, view.folder, uid, True) for uid in batch])
        else:
            # Headers only: one store call for the whole batch, not one per message.
            structs = await box.structures(view.folder, batch)
            loaded = [(structs[uid], None) if uid in structs else None for uid in batch]
        for uid, got in zip(batch, loaded, strict=True):
            if got is None:
                gone.add(uid)
                continue
            seq = view.seq_of(uid) or 0
            cand = Candidate(seq, uid, view.info[uid], uid in view.recent, got[0], got[1])
            for cid, col in columns:
                if uid not in col:
                    col[uid] = column_value(cid, cand)
            if direct and match(cand):
                found.append(uid)
    if direct:
        return
    info_of, recent = view.info, view.recent
    tests = column_tests(key, fields) if prefiltered else None
    if tests is not None:
        # The metadata part of the key passed in phase 1: only the header values decide.
        if len(tests) == 1:
            col, needle = tests[0]
            get = col.get
            hits = [u for u in undecided if (v := get(u)) is not None and needle in v]
            found.extend([u for u in hits if u not in gone] if gone else hits)
            return
        for uid in undecided:
            if uid not in gone and all(
                (v := col.get(uid)) is not None and needle in v for col, needle in tests
            ):
                found.append(uid)
        return
    cand = Candidate(0, 0, info_of[undecided[0]], False)
    for uid in undecided:
        if uid in gone:
            continue
        cand.seq, cand.uid, cand.info, cand.recent = (
            view.seq_of(uid) or 0,
            uid,
            info_of[uid],
            uid in recent,
        )
        if match(cand):
            found.append(uid)


async def search(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Search) and s.view is not None and s.mailbox is not None
    view, box = s.view, s.mailbox
    prog = cmd.program
    if prog.charset is not None and prog.charset not in CHARSETS:
        raise no("Unsupported charset", b"BADCHARSET (UTF-8 US-ASCII)")
    if prog.uses_modseq:
        s.condstore = True
    cols, need_struct, need_data = plan(prog.key)
    largest_seq = len(view.uids)
    largest_uid = view.uids[-1] if view.uids else 0
    saved = set(s.saved_uids)
    # UIDs only while searching: no tuple per message (they would also wake the cyclic GC).
    found: list[int] = []
    key = prog.key
    content = bool(cols) or need_struct or need_data
    fields = s.field_cache.folder(s.account or "", view.folder, view.uidvalidity) if cols else None
    match = compile_key(key, largest_seq, largest_uid, saved, fields)
    decide = compile_prefilter(key, largest_seq, largest_uid, saved) if content else match
    # Phase 1, metadata only: one reused Candidate (100,000 messages, no allocation each).
    undecided: list[int] = []
    info_of, recent, pending = view.info, view.recent, view.pending_expunge
    pure_test = compile_info(key) if not content else None
    meta_test = metadata_part(key) if content else None
    if pure_test is not None:  # metadata decides (SEARCH UNSEEN): no candidate objects
        found = [u for u in view.uids if pure_test(info_of[u])]
    elif meta_test is not None:  # UNSEEN FROM x: the metadata part picks what content decides
        undecided = [u for u in view.uids if meta_test(info_of[u])]
        if pending:
            undecided = [u for u in undecided if u not in pending]
    elif view.uids:
        cand = Candidate(0, 0, info_of[view.uids[0]], False)
        for seq, uid in enumerate(list(view.uids), 1):
            info = info_of[uid]
            cand.seq, cand.uid, cand.info, cand.recent = seq, uid, info, uid in recent
            verdict = decide(cand)
            if verdict is None:
                if uid not in pending:
                    undecided.append(uid)
            elif verdict:
                found.append(uid)
    if undecided:
        await _content_phase(
            s, box, undecided, cols, need_struct, need_data, key, match, content, found
        )
    if fields is not None:
        if any(len(col) > len(view.uids) for col in fields.columns.values()):
            fields.prune(view.info, largest_uid)
        s.field_cache.trim()
    found.sort()
    uids = view.uids
    numbers = found if cmd.uid else [bisect.bisect_left(uids, u) + 1 for u in found]
    modseq = max((info_of[u].modseq for u in found), default=0) if prog.uses_modseq else 0
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
                keep.append(found[0])
            if found and "MAX" in opts:
                keep.append(found[-1])
            s.saved_uids = sorted(set(keep))
        else:
            s.saved_uids = list(found)
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
