"""ENVELOPE, BODY and BODYSTRUCTURE responses from ``merpati.mime.structure`` objects, exactly
per rfc9051:9 (envelope, body, body-type-1part, body-type-mpart, body-ext-*) and rfc3501:9.

NIL versus "": an absent field is NIL, a present empty one is "". message/rfc822 parts carry
their own envelope, body and line count. Multipart extension data is in grammar order:
parameters, disposition, language, location. Also finds a part by its section number
(rfc9051:6.4.5 section-part), which FETCH BODY[...] and BINARY[...] use.
"""

from __future__ import annotations

from merpati.imap.wire import NIL, nstring, string
from merpati.mime.structure import BodyPart, Envelope, EnvelopeAddress, MessageStructure

MAX_DEPTH = 60  # deeper MIME trees are served truncated (the scanner keeps them anyway)
_EMPTY_PART = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'


def _addresses(addrs: tuple[EnvelopeAddress, ...] | None, utf8: bool) -> bytes:
    if not addrs:
        return NIL
    return (
        b"("
        + b"".join(
            b"(" + b" ".join(nstring(v, utf8) for v in (a.name, a.adl, a.mailbox, a.host)) + b")"
            for a in addrs
        )
        + b")"
    )


def envelope(env: Envelope, utf8: bool = False) -> bytes:
    # rfc9051:7.5.2 sender and reply-to default to from when absent.
    sender = env.sender or env.from_
    reply_to = env.reply_to or env.from_
    fields = [
        nstring(env.date, utf8),
        nstring(env.subject, utf8),
        _addresses(env.from_, utf8),
        _addresses(sender, utf8),
        _addresses(reply_to, utf8),
        _addresses(env.to, utf8),
        _addresses(env.cc, utf8),
        _addresses(env.bcc, utf8),
        nstring(env.in_reply_to, utf8),
        nstring(env.message_id, utf8),
    ]
    return b"(" + b" ".join(fields) + b")"


def _s(value: str) -> bytes:
    return string(value.encode("utf-8", "replace"))


def _params(params: tuple[tuple[str, str], ...]) -> bytes:
    if not params:
        return NIL
    return b"(" + b" ".join(_s(k) + b" " + _s(v) for k, v in params) + b")"


def _disposition(d: tuple[str, tuple[tuple[str, str], ...]] | None) -> bytes:
    if d is None:
        return NIL
    return b"(" + _s(d[0]) + b" " + _params(d[1]) + b")"


def _language(lang: tuple[str, ...] | None) -> bytes:
    if not lang:
        return NIL
    if len(lang) == 1:
        return _s(lang[0])
    return b"(" + b" ".join(_s(x) for x in lang) + b")"


def is_message(part: BodyPart) -> bool:
    return part.message is not None and part.type.lower() == "message"


def body(part: BodyPart, extended: bool, utf8: bool = False, depth: int = 0) -> bytes:
    if depth > MAX_DEPTH:
        return _EMPTY_PART
    if part.type.lower() == "multipart":
        children = b"".join(body(p, extended, utf8, depth + 1) for p in part.parts)
        out = b"(" + (children or _EMPTY_PART) + b" " + _s(part.subtype)
        if extended:
            out += b" " + b" ".join(
                (
                    _params(part.params),
                    _disposition(part.disposition),
                    _language(part.language),
                    nstring(part.location),
                )
            )
        return out + b")"
    fields = [
        _s(part.type),
        _s(part.subtype),
        _params(part.params),
        nstring(part.id, utf8),
        nstring(part.description, utf8),
        _s(part.encoding),
        b"%d" % part.size,
    ]
    if is_message(part) and part.message is not None:
        fields.append(envelope(part.message.envelope, utf8))
        fields.append(body(part.message.body, extended, utf8, depth + 1))
        fields.append(b"%d" % part.lines)
    elif part.type.lower() == "text":
        fields.append(b"%d" % part.lines)
    if extended:
        fields += [
            nstring(part.md5),
            _disposition(part.disposition),
            _language(part.language),
            nstring(part.location),
        ]
    return b"(" + b" ".join(fields) + b")"


def bodystructure(msg: MessageStructure, utf8: bool = False) -> bytes:
    return body(msg.body, True, utf8)


def body_simple(msg: MessageStructure, utf8: bool = False) -> bytes:
    return body(msg.body, False, utf8)


def find_part(msg: MessageStructure, path: tuple[int, ...]) -> BodyPart | None:
    """The part named by a section number; None if it does not exist (rfc9051:6.4.5)."""
    part = msg.body
    for i, n in enumerate(path):
        if part.type.lower() == "multipart":
            if n > len(part.parts):
                return None
            part = part.parts[n - 1]
        elif i > 0 and is_message(part) and part.message is not None:
            inner = part.message.body
            if inner.type.lower() == "multipart":
                if n > len(inner.parts):
                    return None
                part = inner.parts[n - 1]
            elif n == 1:
                part = inner
            else:
                return None
        elif n == 1 and i == 0:
            # a non-multipart message has exactly one part, its body
            continue
        else:
            return None
    return part
