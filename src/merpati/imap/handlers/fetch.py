"""FETCH and UID FETCH (rfc9051:6.4.5, rfc3501:6.4.5) of every item, with CHANGEDSINCE and
MODSEQ (rfc7162:3.1.4) and BINARY/BINARY.SIZE (rfc3516).

Content and structure are read from the store only for the items that need them. Fetching a
body section without .PEEK sets \\Seen (one store call for the whole command) and the new FLAGS
are included in the response. Items that need only metadata (UID, FLAGS, MODSEQ, sizes, dates)
take a fast path with no store call at all: ``UID FETCH 1:* (UID FLAGS)`` is a loop over the
view's snapshot.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap import qresync, sections, wire
from merpati.imap.bodystructure import body_simple, bodystructure, envelope
from merpati.imap.parse.dates import format_date_time
from merpati.imap.parse.fetchatt import FetchAtt
from merpati.imap.responses import Result, bad, no, ok
from merpati.imap.view import FlagFormatter
from merpati.mailstore.api import FlagMode, MessageInfo, NoSuchMessage
from merpati.mime.structure import MessageStructure

if TYPE_CHECKING:
    from merpati.imap.session import Session

_META = frozenset({"UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE"})
_STRUCT = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})


async def fetch(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Fetch) and s.view is not None and s.mailbox is not None
    view, box = s.view, s.mailbox
    atts = list(cmd.atts)
    names = {a.name for a in atts}
    if cmd.uid and "UID" not in names:
        atts.insert(0, FetchAtt("UID"))  # rfc9051:6.4.9 UID FETCH always returns UID
    if cmd.changedsince is not None or "MODSEQ" in names:
        s.condstore = True
        if "MODSEQ" not in names:
            atts.append(FetchAtt("MODSEQ"))
    rev1 = not s.rev2
    if cmd.changedsince is None and all(a.name in _FAST for a in atts):
        await _fetch_metadata(s, s.resolve_spans(cmd.seqset, cmd.uid), atts, rev1)
        return ok(f"{'UID ' if cmd.uid else ''}FETCH completed")
    targets = s.resolve(cmd.seqset, cmd.uid)
    if cmd.vanished:
        if not s.qresync:
            raise bad("QRESYNC must be enabled first")  # rfc7162:3.2.6
        assert cmd.changedsince is not None
        changes = await box.changes_since(view.folder, cmd.changedsince)
        if cmd.changedsince >= changes.expunge_history_from:
            uidnext = max(view.uids[-1] if view.uids else 0, *changes.expunged, 0) + 1
        else:  # no history that far back: UIDs up to UIDNEXT that are not here vanished
            uidnext = (await box.folder(view.folder)).uidnext
        gone = qresync.vanished_earlier(changes, cmd.changedsince, cmd.seqset, view.uids, uidnext)
        if gone:
            s.write(b"* VANISHED (EARLIER) " + qresync.ranges_bytes(gone) + b"\r\n")
    if cmd.changedsince is not None:
        since = cmd.changedsince
        targets = [(q, u) for q, u in targets if view.info[u].modseq > since]
    # rfc9051:6.4.5 non-PEEK body fetches set \Seen (not in a read-only mailbox).
    if not view.readonly and any(a.sets_seen for a in atts):
        unseen = [u for _, u in targets if "\\Seen" not in view.info[u].flags]
        if unseen:
            changed, _ = await box.store_flags(view.folder, unseen, FlagMode.ADD, ["\\Seen"])
            view.note_flags(changed)
            if "FLAGS" not in names:
                atts.append(FetchAtt("FLAGS"))
    need_data = any(_needs_data(a) for a in atts)
    need_struct = any(_needs_structure(a) for a in atts)
    utf8 = s.utf8
    fmt = view.fmt
    if all(a.name in _FAST for a in atts):
        spans = [(q, [u]) for q, u in targets]  # CHANGEDSINCE picked them one by one
        await _fetch_metadata(s, spans, atts, rev1)
        return ok(f"{'UID ' if cmd.uid else ''}FETCH completed")
    missing = 0
    for seq, uid in targets:
        info = view.info[uid]
        data: bytes = b""
        st: MessageStructure | None = None
        if uid in view.pending_expunge and (need_data or need_struct):
            missing += 1
            continue
        try:
            if need_data:
                data = await box.read(view.folder, uid)
            if need_struct:
                st = await box.structure(view.folder, uid)
        except NoSuchMessage:
            missing += 1
            continue
        items: list[bytes] = []
        for att in atts:
            items.append(_item(att, info, data, st, rev1 and uid in view.recent, utf8, fmt))
        s.write(b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n")
        await s.maybe_flush()
    if missing and not cmd.uid:
        raise no("Some messages were expunged meanwhile", b"EXPUNGEISSUED")
    return ok(f"{'UID ' if cmd.uid else ''}FETCH completed")


_FAST = frozenset({"UID", "FLAGS", "MODSEQ", "RFC822.SIZE"})
_FAST_CHUNK = 2000  # messages per write
_FLAG_SET = operator.itemgetter(2)  # MessageInfo.flags
_RECENT_FMT = FlagFormatter()  # flag texts with \Recent (shared: a bounded cache)


async def _fetch_metadata(
    s: Session, spans: list[tuple[int, list[int]]], atts: list[FetchAtt], rev1: bool
) -> None:
    """The metadata-only fast path (``UID FETCH 1:* (UID FLAGS)`` as clients sync): one
    %-format per message from the view's snapshot, written in chunks."""
    view = s.view
    assert view is not None
    names = tuple(a.name for a in atts)
    template = (
        b"* %d FETCH ("
        + b" ".join(
            {"UID": b"UID %d", "FLAGS": b"FLAGS %s", "MODSEQ": b"MODSEQ (%d)"}.get(
                n, b"RFC822.SIZE %d"
            )
            for n in names
        )
        + b")\r\n"
    )
    info, recent, fmt = view.info, view.recent, view.fmt
    flag_text: dict[frozenset[str], bytes] = {}  # few distinct flag sets among many messages

    def flags_of_set(fs: frozenset[str]) -> bytes:
        out = flag_text.get(fs)
        if out is None:
            out = flag_text[fs] = fmt(fs)
        return out

    with_recent = rev1 and bool(recent)
    for first, span in spans:
        for off in range(0, len(span), _FAST_CHUNK):
            part = span[off : off + _FAST_CHUNK]
            seqs = range(first + off, first + off + len(part))
            lines = _lines(names, template, seqs, part, info, recent, with_recent, flags_of_set)
            s.write(b"".join(lines))
            await s.maybe_flush()


def _lines(
    names: tuple[str, ...],
    template: bytes,
    seqs: range,
    part: list[int],
    info: dict[int, MessageInfo],
    recent: set[int],
    with_recent: bool,
    flags_of_set: Callable[[frozenset[str]], bytes],
) -> list[bytes]:
    """One response line per message of ``part`` (UIDs at sequence numbers ``seqs``)."""
    infos = list(map(info.__getitem__, part))
    # The flag text from a table of this chunk's few flag sets (with \Recent for rev1's
    # recent messages); no tuple is built per message for the shapes clients sync with.
    plain = {fs: flags_of_set(fs) for fs in set(map(_FLAG_SET, infos))}
    if with_recent:
        marked = {fs: _RECENT_FMT(fs, True) for fs in plain}
        texts = [
            (marked if u in recent else plain)[m.flags] for u, m in zip(part, infos, strict=True)
        ]
    else:
        texts = [plain[m.flags] for m in infos]
    if names == ("UID", "FLAGS"):
        return [template % x for x in zip(seqs, part, texts, strict=True)]
    if names == ("FLAGS",):
        return [template % x for x in zip(seqs, texts, strict=True)]
    if names == ("UID", "FLAGS", "MODSEQ"):
        return [
            template % (q, u, t, m.modseq)
            for q, u, t, m in zip(seqs, part, texts, infos, strict=True)
        ]
    lines = []
    for seq, uid, text, m in zip(seqs, part, texts, infos, strict=True):
        values: list[int | bytes] = [seq]
        for n in names:
            if n == "UID":
                values.append(uid)
            elif n == "FLAGS":
                values.append(text)
            elif n == "MODSEQ":
                values.append(m.modseq)
            else:
                values.append(m.size)
        lines.append(template % tuple(values))
    return lines


def _needs_data(att: FetchAtt) -> bool:
    if att.name in _META:
        return False
    return att.name not in _STRUCT or att.has_section


def _needs_structure(att: FetchAtt) -> bool:
    if att.name in _META or att.name == "RFC822":
        return False
    if att.name in ("BODY", "BINARY") and att.has_section:
        return bool(att.section or att.text)
    return True


def _item(
    att: FetchAtt,
    info: MessageInfo,
    data: bytes,
    st: MessageStructure | None,
    recent: bool,
    utf8: bool,
    fmt: FlagFormatter,
) -> bytes:
    name = att.name
    if name == "UID":
        return b"UID %d" % info.uid
    if name == "FLAGS":
        return b"FLAGS " + fmt(info.flags, recent)
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % info.modseq
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % info.size
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_date_time(info.internaldate, info.internaldate_tz)
    if name == "RFC822":
        return b"RFC822 " + wire.literal(data)
    if name in ("BODY", "BINARY") and att.has_section and not att.section and not att.text:
        return att.response_name() + b" " + wire.literal(sections.partial(data, att))
    if st is None:
        raise AssertionError("structure not loaded")
    if name == "ENVELOPE":
        return b"ENVELOPE " + envelope(st.envelope, utf8)
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + bodystructure(st, utf8)
    if name == "BODY" and not att.has_section:
        return b"BODY " + body_simple(st, utf8)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + wire.literal(data[st.body.header_start : st.body.body_start])
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + wire.literal(data[st.body.body_start : st.body.end])
    if name == "BODY":
        value = sections.section(data, st, att)
        if value is None:
            return att.response_name() + b" NIL"
        return att.response_name() + b" " + wire.literal(sections.partial(value, att))
    if name in ("BINARY", "BINARY.SIZE"):
        try:
            decoded = sections.binary(data, st, att.section)
        except sections.UnknownEncoding:
            raise no("Unknown content-transfer-encoding", b"UNKNOWN-CTE") from None
        if name == "BINARY.SIZE":
            return att.response_name() + b" %d" % (len(decoded) if decoded is not None else 0)
        if decoded is None:
            return att.response_name() + b" NIL"
        chunk = sections.partial(decoded, att)
        return att.response_name() + b" " + wire.literal(chunk, binary=b"\x00" in chunk)
    raise AssertionError(f"unhandled fetch item {name}")
