"""Evaluating SEARCH keys (rfc9051:6.4.4) over the selected mailbox.

Text keys match case-insensitively on decoded text: header values with their RFC 2047 words
decoded, bodies with their content-transfer-encoding and charset undone. What a search needs
(structure, content) is found from the key tree first, so a flag-only search never reads a
message. Dates compare calendar days in the message's own zone, disregarding time
(rfc9051:6.4.4).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.header
import email.utils
import functools
from collections.abc import Callable
from dataclasses import dataclass

from merpati.imap.parse.searchkey import SearchKey
from merpati.imap.searchcache import SEP, Column, ColumnId, FolderFields, join_values
from merpati.imap.sections import filter_header
from merpati.mailstore.api import MessageInfo
from merpati.mime.structure import BodyPart, MessageStructure

MAX_BODY_TEXT = 10 * 1024 * 1024  # decoded text searched per message
_STRUCT_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO", "SENTBEFORE", "SENTON",
                          "SENTSINCE", "HEADER"})  # fmt: skip
_DATA_KEYS = frozenset({"BODY", "TEXT", "HEADER"})


@dataclass(slots=True)
class Candidate:
    seq: int
    uid: int
    info: MessageInfo
    recent: bool
    structure: MessageStructure | None = None
    data: bytes | None = None
    fields: tuple[tuple[str, str], ...] | None = None  # search_headers without a structure
    _headers: dict[str, list[str]] | None = None
    _body: str | None = None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        if self.data is None:
            # The decoded search fields: a short tuple, scanned directly (no dict per message).
            fields = self.fields
            if fields is None:
                fields = self.structure.search_headers if self.structure is not None else ()
            return [v for k, v in fields if k == name]
        if self._headers is None:
            self._headers = {}
            if self.data is not None and self.structure is not None:
                b = self.structure.body
                for line in _unfold(self.data[b.header_start : b.body_start]):
                    key, _, value = line.partition(":")
                    self._headers.setdefault(key.strip().lower(), []).append(
                        _decode_words(value.strip())
                    )
            else:
                fields = self.fields
                if fields is None and self.structure is not None:
                    fields = self.structure.search_headers
                for key, value in fields or ():
                    self._headers.setdefault(key, []).append(value)
        return self._headers.get(name.lower(), [])

    def body_text(self) -> str:
        if self._body is None:
            if self.data is None or self.structure is None:
                self._body = ""
            else:
                chunks: list[str] = []
                _collect_text(self.data, self.structure.body, chunks, 0)
                self._body = "\n".join(chunks)[:MAX_BODY_TEXT].casefold()
        return self._body


def needs(key: SearchKey) -> tuple[bool, bool]:
    """(structure needed, content needed) for evaluating ``key``."""
    st = key.name in _STRUCT_KEYS or key.name in _DATA_KEYS
    data = key.name in _DATA_KEYS
    for child in key.children:
        a, b = needs(child)
        st, data = st or a, data or b
    return st, data


_CONTENT_KEYS = _STRUCT_KEYS | _DATA_KEYS


def prefilter(
    key: SearchKey, m: Candidate, largest_seq: int, largest_uid: int, saved: set[int]
) -> bool | None:
    """Decide ``key`` from metadata alone: True or False, or None when a content key
    (header, body) decides. Lets SEARCH UNSEEN FROM x read only the unseen messages."""
    name = key.name
    if name in _CONTENT_KEYS:
        return None
    if name == "AND":
        undecided = False
        for k in key.children:
            r = prefilter(k, m, largest_seq, largest_uid, saved)
            if r is False:
                return False
            undecided = undecided or r is None
        return None if undecided else True
    if name == "OR":
        undecided = False
        for k in key.children:
            r = prefilter(k, m, largest_seq, largest_uid, saved)
            if r is True:
                return True
            undecided = undecided or r is None
        return None if undecided else False
    if name == "NOT":
        r = prefilter(key.children[0], m, largest_seq, largest_uid, saved)
        return None if r is None else not r
    return matches(key, m, largest_seq, largest_uid, saved)


def matches(
    key: SearchKey, m: Candidate, largest_seq: int, largest_uid: int, saved: set[int]
) -> bool:
    name = key.name
    flags = m.info.flags
    flag_key = _FLAG_KEYS.get(name)
    if flag_key is not None:
        return (flag_key[0] in flags) == flag_key[1]
    if name == "AND":
        return all(matches(k, m, largest_seq, largest_uid, saved) for k in key.children)
    if name == "OR":
        return any(matches(k, m, largest_seq, largest_uid, saved) for k in key.children)
    if name == "NOT":
        return not matches(key.children[0], m, largest_seq, largest_uid, saved)
    if name in _ADDRESS_KEYS:
        needle = _needle(key.text)
        return any(needle in v.casefold() for v in m.header_values(_ADDRESS_KEYS[name]))
    if name == "ALL":
        return True
    if name == "RECENT":
        return m.recent
    if name == "NEW":
        return m.recent and "\\Seen" not in flags
    if name == "OLD":
        return not m.recent
    if name == "KEYWORD":
        return _has_keyword(flags, key.flag or "")
    if name == "UNKEYWORD":
        return not _has_keyword(flags, key.flag or "")
    if name == "LARGER":
        return m.info.size > (key.number or 0)
    if name == "SMALLER":
        return m.info.size < (key.number or 0)
    if name == "MODSEQ":
        return m.info.modseq >= (key.number or 0)
    if name == "SEQ":
        assert key.seqset is not None
        if key.seqset.saved:
            return m.uid in saved
        return any(lo <= m.seq <= hi for lo, hi in key.seqset.resolve(largest_seq))
    if name == "UID":
        assert key.seqset is not None
        if key.seqset.saved:
            return m.uid in saved
        return any(lo <= m.uid <= hi for lo, hi in key.seqset.resolve(largest_uid))
    if name in ("BEFORE", "ON", "SINCE"):
        tz = dt.timezone(dt.timedelta(minutes=m.info.internaldate_tz))
        day = dt.datetime.fromtimestamp(m.info.internaldate, tz).date()
        return _compare_day(name, day, key.day)
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = _sent_day(m)
        return sent is not None and _compare_day(name[4:], sent, key.day)
    needle = _needle(key.text)
    if name == "HEADER":
        field = (key.field or b"").decode("ascii", "replace")
        values = m.header_values(field)
        return bool(values) and any(needle in v.casefold() for v in values)
    if name == "BODY":
        return needle in m.body_text()
    if name == "TEXT":
        if m.data is not None and m.structure is not None:
            b = m.structure.body
            head = _decode_words(m.data[b.header_start : b.body_start].decode("utf-8", "replace"))
            if needle in head.casefold():
                return True
        return needle in m.body_text()
    return False


_ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}


@functools.lru_cache(maxsize=256)
def _needle(text: bytes | None) -> str:
    return (text or b"").decode("utf-8", "replace").casefold()


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}


def _has_keyword(flags: frozenset[str], keyword: str) -> bool:
    k = keyword.lower()
    return any(f.lower() == k for f in flags)


def _compare_day(op: str, day: dt.date, ref: dt.date | None) -> bool:
    assert ref is not None
    if op == "BEFORE":
        return day < ref
    if op == "ON":
        return day == ref
    return day >= ref


def _sent_day(m: Candidate) -> dt.date | None:
    for value in m.header_values("date"):
        try:
            return email.utils.parsedate_to_datetime(value).date()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


def _unfold(header: bytes) -> list[str]:
    fields: list[str] = []
    for raw in header.split(b"\r\n"):
        line = raw.decode("utf-8", "replace")
        if not line:
            continue
        if line[0] in " \t" and fields:
            fields[-1] += " " + line.strip()
        else:
            fields.append(line)
    return fields


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError, binascii.Error):
        return value


def _collect_text(data: bytes, part: BodyPart, out: list[str], depth: int) -> None:
    if depth > 50 or sum(len(x) for x in out) > MAX_BODY_TEXT:
        return
    if part.parts:
        for child in part.parts:
            _collect_text(data, child, out, depth + 1)
        return
    if part.message is not None:
        b = part.message.body
        out.append(_decode_words(data[b.header_start : b.body_start].decode("utf-8", "replace")))
        _collect_text(data, b, out, depth + 1)
        return
    if part.type.lower() not in ("text", "message"):
        return
    raw = data[part.body_start : part.end]
    enc = part.encoding.lower()
    if enc == "base64":
        try:
            raw = base64.b64decode(b"".join(raw.split()) + b"==", validate=False)
        except (binascii.Error, ValueError):
            pass
    elif enc == "quoted-printable":
        raw = binascii.a2b_qp(raw)
    charset = dict((k.lower(), v) for k, v in part.params).get("charset", "utf-8")
    try:
        out.append(raw.decode(charset, "replace"))
    except LookupError:
        out.append(raw.decode("utf-8", "replace"))


__all__ = [
    "Candidate",
    "Matcher",
    "Prefilter",
    "column_tests",
    "compile_info",
    "compile_key",
    "compile_prefilter",
    "filter_header",
    "matches",
    "metadata_part",
    "needs",
    "plan",
    "prefilter",
]


Matcher = Callable[[Candidate], bool]
Prefilter = Callable[[Candidate], "bool | None"]


def _column_of(key: SearchKey) -> ColumnId | None:
    """The cache column that answers a header key, or None (not a header key, or a needle
    that the joined values cannot answer exactly)."""
    if SEP in _needle(key.text):
        return None
    if key.name in _ADDRESS_KEYS:
        return ("f", _ADDRESS_KEYS[key.name])
    if key.name == "HEADER":
        return ("h", (key.field or b"").decode("ascii", "replace").lower())
    return None


def plan(key: SearchKey) -> tuple[set[ColumnId], bool, bool]:
    """(cache columns, structure needed, content needed) for evaluating ``key`` with
    ``compile_key(..., fields)``: header keys come from the columns; the rest as ``needs``."""
    cols: set[ColumnId] = set()
    st = data = False
    stack = [key]
    while stack:
        k = stack.pop()
        stack.extend(k.children)
        cid = _column_of(k)
        if cid is not None:
            cols.add(cid)
        elif k.name in _CONTENT_KEYS:
            st = True
            data = data or k.name in _DATA_KEYS
    return cols, st, data


def column_value(cid: ColumnId, m: Candidate) -> str | None:
    """The value of column ``cid`` for a candidate loaded with its structure (and, for a
    raw header column, its content)."""
    kind, name = cid
    if kind == "f":
        fields = m.fields
        if fields is None:
            fields = m.structure.search_headers if m.structure is not None else ()
        return join_values([v for k, v in fields if k == name])
    return join_values(m.header_values(name))


def compile_prefilter(
    key: SearchKey, largest_seq: int, largest_uid: int, saved: set[int]
) -> Prefilter:
    """``prefilter`` as one function, built once per SEARCH (``content_decides`` itself when no
    message can be decided from metadata)."""
    limits = (largest_seq, largest_uid, saved)
    name = key.name
    if name in _CONTENT_KEYS:
        return content_decides
    if name in ("AND", "OR"):
        subs = [compile_prefilter(k, largest_seq, largest_uid, saved) for k in key.children]
        if all(_pure(k) for k in key.children):
            whole = compile_key(key, largest_seq, largest_uid, saved)
            return lambda m: whole(m)
        impure = [f for k, f in zip(key.children, subs, strict=True) if not _pure(k)]
        if name == "AND" and all(f is content_decides for f in impure):
            # SEARCH UNSEEN FROM x: metadata keys beside content keys only.
            pure = [k for k in key.children if _pure(k)]
            if not pure:
                return content_decides
            meta = compile_key(SearchKey("AND", children=tuple(pure)), *limits)
            return lambda m: None if meta(m) else False
        stop = name == "OR"  # OR is decided by a True, AND by a False

        def combined(m: Candidate) -> bool | None:
            undecided = False
            for f in subs:
                r = f(m)
                if r is stop:
                    return stop
                undecided = undecided or r is None
            return None if undecided else not stop

        return combined
    if name == "NOT":
        inner = compile_prefilter(key.children[0], largest_seq, largest_uid, saved)

        def negated(m: Candidate) -> bool | None:
            r = inner(m)
            return None if r is None else not r

        return negated
    whole = compile_key(key, largest_seq, largest_uid, saved)
    return lambda m: whole(m)


def column_tests(key: SearchKey, fields: FolderFields) -> list[tuple[Column, str]] | None:
    """For a header key, or an AND of header keys and metadata keys (which the prefilter
    already passed): the (column, needle) pairs that decide a message; else None."""
    keys = key.children if key.name == "AND" else (key,)
    tests: list[tuple[Column, str]] = []
    for k in keys:
        cid = _column_of(k)
        if cid is not None:
            tests.append((fields.column(cid), _needle(k.text)))
        elif not _pure(k):
            return None
    return tests


InfoTest = Callable[[MessageInfo], bool]


def compile_info(key: SearchKey) -> InfoTest | None:
    """``key`` as a function of the message's metadata alone (flags, size, MODSEQ and the
    boolean keys over them), or None when it needs anything else. Lets the search's metadata
    pass run without a candidate object."""
    name = key.name
    flag_key = _FLAG_KEYS.get(name)
    if flag_key is not None:
        flag, wanted = flag_key
        if wanted:
            return lambda i: flag in i.flags
        return lambda i: flag not in i.flags
    if name in ("AND", "OR", "NOT"):
        subs = [compile_info(k) for k in key.children]
        if any(f is None for f in subs):
            return None
        tests = [f for f in subs if f is not None]
        if name == "NOT":
            inner = tests[0]
            return lambda i: not inner(i)
        if len(tests) == 1:
            return tests[0]
        if name == "AND":
            return lambda i: all(f(i) for f in tests)
        return lambda i: any(f(i) for f in tests)
    if name == "ALL":
        return lambda i: True
    number = key.number or 0
    if name == "LARGER":
        return lambda i: i.size > number
    if name == "SMALLER":
        return lambda i: i.size < number
    if name == "MODSEQ":
        return lambda i: i.modseq >= number
    if name in ("KEYWORD", "UNKEYWORD"):
        keyword, wanted = key.flag or "", name == "KEYWORD"
        return lambda i: _has_keyword(i.flags, keyword) == wanted
    return None


def metadata_part(key: SearchKey) -> InfoTest | None:
    """For a key whose prefilter is "metadata keys beside content keys" (an AND, or a lone
    content key): the metadata keys as one ``InfoTest`` (None: not that shape, or they need
    more than metadata)."""
    if key.name in _CONTENT_KEYS:
        return lambda i: True
    if key.name != "AND" or any(not _pure(k) and k.name not in _CONTENT_KEYS for k in key.children):
        return None
    pure = [k for k in key.children if _pure(k)]
    if not pure:
        return lambda i: True
    return compile_info(SearchKey("AND", children=tuple(pure)))


def content_decides(m: Candidate) -> bool | None:
    """The prefilter of a key that only content decides."""
    return None


def _pure(key: SearchKey) -> bool:
    """No content key anywhere in ``key``: metadata decides it."""
    return key.name not in _CONTENT_KEYS and all(_pure(k) for k in key.children)


def compile_key(
    key: SearchKey,
    largest_seq: int,
    largest_uid: int,
    saved: set[int],
    fields: FolderFields | None = None,
) -> Matcher:
    """``key`` as one function of a candidate, built once per SEARCH: flag, boolean and
    header keys become closures (the needle decoded once); every other key is answered by
    ``matches``. With ``fields``, header keys read the cache columns that ``plan`` names (the
    caller fills them for every candidate first). Same results as ``matches``."""
    name = key.name
    flag_key = _FLAG_KEYS.get(name)
    if flag_key is not None:
        flag, wanted = flag_key
        if wanted:
            return lambda m: flag in m.info.flags
        return lambda m: flag not in m.info.flags
    if name in ("AND", "OR"):
        subs = [compile_key(k, largest_seq, largest_uid, saved, fields) for k in key.children]
        if len(subs) == 1:
            return subs[0]
        if name == "AND":
            if len(subs) == 2:
                a, b = subs
                return lambda m: a(m) and b(m)
            return lambda m: all(f(m) for f in subs)
        if len(subs) == 2:
            a, b = subs
            return lambda m: a(m) or b(m)
        return lambda m: any(f(m) for f in subs)
    if name == "NOT":
        inner = compile_key(key.children[0], largest_seq, largest_uid, saved, fields)
        return lambda m: not inner(m)
    if name == "ALL":
        return lambda m: True
    cid = _column_of(key) if fields is not None else None
    if cid is not None and fields is not None:
        col, needle = fields.column(cid), _needle(key.text)
        return lambda m: (v := col.get(m.uid)) is not None and needle in v
    if name in _ADDRESS_KEYS:
        needle, field_name = _needle(key.text), _ADDRESS_KEYS[name]
        return lambda m: any(needle in v.casefold() for v in m.header_values(field_name))
    return lambda m: matches(key, m, largest_seq, largest_uid, saved)
