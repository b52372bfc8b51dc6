"""The parse-once MIME scanner: bytes of a stored message -> ``MessageStructure``.

One pass at delivery finds every part's header and body offsets (so IMAP BODY[1.2.MIME] and
partial fetches are slices), the Content-* fields BODYSTRUCTURE needs, the ENVELOPE fields as
raw bytes (rfc3501:7.4.2), nested message/rfc822 structure, and the decoded header values that
SEARCH and SORT use. Malformed input (missing or wrong boundaries, bad encodings, 8-bit headers,
deep nesting, no header/body separator) never raises: it gets a best-effort structure.

It does not decode bodies (base64/quoted-printable) nor look at charsets of bodies.
"""

from __future__ import annotations

from merpati.mime.addresses import parse_address_list
from merpati.mime.headers import (
    decode_search_value,
    find_header_end,
    parse_parameterised,
    split_fields,
    text,
)
from merpati.mime.structure import BodyPart, Envelope, MessageStructure

# Nesting deeper than this (multipart inside message/rfc822 inside multipart...) is treated as
# an opaque text/plain leaf; Dovecot and Cyrus cap it similarly. It also bounds the recursion.
MAX_DEPTH = 50
# Parts kept per message in total; further parts are folded into their parent's last part.
MAX_PARTS = 5000
# Header fields whose decoded values are kept for SEARCH/SORT (others are searched raw).
SEARCH_FIELDS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "sender",
        "reply-to",
        "message-id",
        "in-reply-to",
        "references",
        "list-id",
        "content-type",
    }
)

_DEFAULT_PARAMS = (("charset", "us-ascii"),)


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def scan(data: bytes) -> MessageStructure:
    """Structure of a whole message; offsets are into ``data``."""
    return _message(data, 0, len(data), 0, _Budget())


def _message(data: bytes, start: int, end: int, depth: int, budget: _Budget) -> MessageStructure:
    header_end, body_start = find_header_end(data, start, end)
    fields = split_fields(data, start, header_end)
    body = _part(data, start, header_end, body_start, end, fields, depth, budget, False)
    return MessageStructure(
        envelope=_envelope(fields),
        body=body,
        search_headers=tuple(
            (name, decode_search_value(value)) for name, value in fields if name in SEARCH_FIELDS
        ),
    )


def _first(fields: list[tuple[str, bytes]], name: str) -> bytes | None:
    for key, value in fields:
        if key == name:
            return value
    return None


def _envelope(fields: list[tuple[str, bytes]]) -> Envelope:
    from_ = parse_address_list(_first(fields, "from"))
    sender = parse_address_list(_first(fields, "sender")) or from_
    reply_to = parse_address_list(_first(fields, "reply-to")) or from_
    return Envelope(
        date=_first(fields, "date"),
        subject=_first(fields, "subject"),
        from_=from_,
        sender=sender,
        reply_to=reply_to,
        to=parse_address_list(_first(fields, "to")),
        cc=parse_address_list(_first(fields, "cc")),
        bcc=parse_address_list(_first(fields, "bcc")),
        in_reply_to=_first(fields, "in-reply-to"),
        message_id=_first(fields, "message-id"),
    )


def _part(
    data: bytes,
    header_start: int,
    header_end: int,
    body_start: int,
    end: int,
    fields: list[tuple[str, bytes]],
    depth: int,
    budget: _Budget,
    in_digest: bool,
) -> BodyPart:
    budget.parts += 1
    ctype, subtype, params = _content_type(_first(fields, "content-type"), in_digest)
    encoding_raw = _first(fields, "content-transfer-encoding")
    encoding = text(encoding_raw).strip().upper() if encoding_raw else "7BIT"
    disposition = None
    disp_raw = _first(fields, "content-disposition")
    if disp_raw is not None:
        kind, disp_params = parse_parameterised(disp_raw)
        if kind:
            disposition = (kind, disp_params)
    language = None
    lang_raw = _first(fields, "content-language")
    if lang_raw is not None:
        language = tuple(t for t in (x.strip() for x in text(lang_raw).split(",")) if t) or None
    children: tuple[BodyPart, ...] = ()
    message: MessageStructure | None = None
    lower_type, lower_sub = ctype.lower(), subtype.lower()
    too_deep = depth >= MAX_DEPTH or budget.parts >= MAX_PARTS
    if lower_type == "multipart":
        boundary = next((v for k, v in params if k.lower() == "boundary"), "")
        if too_deep or not boundary:
            # rfc2046:5.1.1 needs a boundary; without one (or too deep) it is opaque text.
            ctype, subtype, params = "text", "plain", _DEFAULT_PARAMS
        else:
            children = _children(
                data,
                body_start,
                end,
                boundary.encode("utf-8", "replace"),
                depth,
                budget,
                lower_sub == "digest",
            )
    elif (
        lower_type == "message"
        and lower_sub in ("rfc822", "global")
        and encoding in ("7BIT", "8BIT", "BINARY")
        and not too_deep
    ):
        message = _message(data, body_start, end, depth + 1, budget)
    return BodyPart(
        header_start=header_start,
        body_start=body_start,
        end=end,
        type=ctype,
        subtype=subtype,
        params=params,
        id=_first(fields, "content-id"),
        description=_first(fields, "content-description"),
        encoding=encoding,
        md5=_first(fields, "content-md5"),
        disposition=disposition,
        language=language,
        location=_first(fields, "content-location"),
        lines=data.count(b"\n", body_start, end),
        parts=children,
        message=message,
    )


def _content_type(
    raw: bytes | None, in_digest: bool
) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    if raw is None:
        # rfc2046:5.1.5 a digest's parts default to message/rfc822; else rfc2045:5.2.
        return ("message", "rfc822", ()) if in_digest else ("text", "plain", _DEFAULT_PARAMS)
    value, params = parse_parameterised(raw)
    kind, slash, sub = value.partition("/")
    kind, sub = kind.strip(), sub.strip()
    if not slash or not kind or not sub or any(c in kind + sub for c in ' \t"()<>@,;:\\[]?='):
        return "text", "plain", _DEFAULT_PARAMS
    return kind, sub, params


def _children(
    data: bytes,
    start: int,
    end: int,
    boundary: bytes,
    depth: int,
    budget: _Budget,
    digest: bool,
) -> tuple[BodyPart, ...]:
    delimiters = _delimiters(data, start, end, b"--" + boundary)
    parts: list[BodyPart] = []
    if not delimiters:
        # No delimiter at all: the whole body becomes one headerless part.
        bounds = [(start, end)]
    else:
        bounds = []
        for k, (_, after, closing) in enumerate(delimiters):
            if closing:
                break
            if k + 1 < len(delimiters):
                bounds.append((after, _line_start_before(data, delimiters[k + 1][0], after)))
            else:
                bounds.append((after, end))  # missing close delimiter: runs to the end
    for part_start, part_end in bounds:
        if budget.parts >= MAX_PARTS:
            break
        header_end, body_start = find_header_end(data, part_start, part_end)
        fields = split_fields(data, part_start, header_end)
        parts.append(
            _part(
                data,
                part_start,
                header_end,
                body_start,
                part_end,
                fields,
                depth + 1,
                budget,
                digest,
            )
        )
    if not parts:
        parts.append(
            BodyPart(
                start,
                start,
                start,
                "text",
                "plain",
                _DEFAULT_PARAMS,
                None,
                None,
                "7BIT",
                None,
                None,
                None,
                None,
                0,
                (),
                None,
            )
        )
    return tuple(parts)


def _line_start_before(data: bytes, pos: int, floor: int) -> int:
    """rfc2046:5.1.1 the CRLF before a delimiter belongs to the delimiter."""
    if pos - 2 >= floor and data[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if pos - 1 >= floor and data[pos - 1 : pos] == b"\n":
        return pos - 1
    return max(pos, floor)


def _delimiters(data: bytes, start: int, end: int, delim: bytes) -> list[tuple[int, int, bool]]:
    """(line start, start of the next line, is-close) of each delimiter line in the range."""
    found: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        at = data.find(delim, pos, end)
        if at < 0:
            return found
        pos = at + len(delim)
        if at != start and data[at - 1] != 0x0A:
            continue
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        rest = data[pos:line_end]
        closing = rest.startswith(b"--")
        tail = rest[2:] if closing else rest
        if tail.strip(b" \t\r"):
            continue  # "--boundaryX": a longer boundary, not ours
        found.append((at, end if nl < 0 else nl + 1, closing))
        if closing:
            return found
        pos = line_end
