"""Compact serialisation of ``MessageStructure`` for the index (JSON of nested arrays).

Byte fields travel as Latin-1 strings (lossless), None as null, and Sender/Reply-To equal to
From as ``1``. ``dumps``/``loads`` round-trip exactly. ``loads`` trusts its input: it reads only
what ``dumps`` wrote (a damaged index is rebuilt by the store, not repaired here).
"""

from __future__ import annotations

import json
from typing import Any

from merpati.mime.structure import BodyPart, Envelope, EnvelopeAddress, MessageStructure

FORMAT = 1  # bump when the layout changes; the store re-scans structures of older formats


def _b(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _ub(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")


def _addrs(value: tuple[EnvelopeAddress, ...] | None) -> list[list[str | None]] | None:
    if value is None:
        return None
    return [[_b(a.name), _b(a.adl), _b(a.mailbox), _b(a.host)] for a in value]


def _uaddrs(value: Any) -> tuple[EnvelopeAddress, ...] | None:
    if value is None:
        return None
    return tuple(EnvelopeAddress(_ub(n), _ub(a), _ub(m), _ub(h)) for n, a, m, h in value)


def _env(e: Envelope) -> list[Any]:
    return [
        _b(e.date),
        _b(e.subject),
        _addrs(e.from_),
        1 if e.sender == e.from_ else _addrs(e.sender),
        1 if e.reply_to == e.from_ else _addrs(e.reply_to),
        _addrs(e.to),
        _addrs(e.cc),
        _addrs(e.bcc),
        _b(e.in_reply_to),
        _b(e.message_id),
    ]


def _uenv(v: list[Any]) -> Envelope:
    from_ = _uaddrs(v[2])
    return Envelope(
        date=_ub(v[0]),
        subject=_ub(v[1]),
        from_=from_,
        sender=from_ if v[3] == 1 else _uaddrs(v[3]),
        reply_to=from_ if v[4] == 1 else _uaddrs(v[4]),
        to=_uaddrs(v[5]),
        cc=_uaddrs(v[6]),
        bcc=_uaddrs(v[7]),
        in_reply_to=_ub(v[8]),
        message_id=_ub(v[9]),
    )


def _part(p: BodyPart) -> list[Any]:
    return [
        p.header_start,
        p.body_start,
        p.end,
        p.type,
        p.subtype,
        [list(kv) for kv in p.params],
        _b(p.id),
        _b(p.description),
        p.encoding,
        _b(p.md5),
        None
        if p.disposition is None
        else [p.disposition[0], [list(kv) for kv in p.disposition[1]]],
        None if p.language is None else list(p.language),
        _b(p.location),
        p.lines,
        [_part(c) for c in p.parts],
        None if p.message is None else _msg(p.message),
    ]


def _upart(v: list[Any]) -> BodyPart:
    disp = v[10]
    return BodyPart(
        header_start=v[0],
        body_start=v[1],
        end=v[2],
        type=v[3],
        subtype=v[4],
        params=tuple((k, x) for k, x in v[5]),
        id=_ub(v[6]),
        description=_ub(v[7]),
        encoding=v[8],
        md5=_ub(v[9]),
        disposition=None if disp is None else (disp[0], tuple((k, x) for k, x in disp[1])),
        language=None if v[11] is None else tuple(v[11]),
        location=_ub(v[12]),
        lines=v[13],
        parts=tuple(_upart(c) for c in v[14]),
        message=None if v[15] is None else _umsg(v[15]),
    )


def _msg(m: MessageStructure) -> list[Any]:
    return [_env(m.envelope), _part(m.body), [list(kv) for kv in m.search_headers]]


def _umsg(v: list[Any]) -> MessageStructure:
    return MessageStructure(
        envelope=_uenv(v[0]),
        body=_upart(v[1]),
        search_headers=tuple((k, x) for k, x in v[2]),
    )


def dumps(structure: MessageStructure) -> bytes:
    return json.dumps([FORMAT, _msg(structure)], separators=(",", ":")).encode("utf-8")


def loads(blob: bytes) -> MessageStructure:
    """Raises ValueError when the blob is not in the current format."""
    value = json.loads(blob)
    if not isinstance(value, list) or len(value) != 2 or value[0] != FORMAT:
        raise ValueError("structure blob in an unknown format")
    return _umsg(value[1])
