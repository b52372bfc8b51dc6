"""Address-list parsing for ENVELOPE (rfc3501:7.4.2): From, Sender, Reply-To, To, Cc, Bcc.

Turns the raw bytes of an address header into ``EnvelopeAddress`` tuples: name (the phrase,
unquoted; else a trailing comment), source route, mailbox and host, and group start/end
markers. Raw bytes are kept (encoded-words are not decoded), as IMAP sends them. Never raises:
whatever cannot be understood is skipped or kept as a mailbox without a host. It does not
validate addresses (``merpati.address`` does that for SMTP).
"""

from __future__ import annotations

from merpati.mime.structure import EnvelopeAddress

MAX_ADDRESSES = 1000  # per header field

_SPECIALS = b"<>,:;@"
_GROUP_END = EnvelopeAddress(None, None, None, None)

# Token kinds.
_ATOM, _QUOTED, _COMMENT, _SPECIAL = 0, 1, 2, 3


def _tokens(raw: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x22:  # quoted-string
            buf = bytearray()
            i += 1
            while i < n and raw[i] != 0x22:
                if raw[i] == 0x5C and i + 1 < n:
                    i += 1
                buf.append(raw[i])
                i += 1
            i += 1
            out.append((_QUOTED, bytes(buf)))
        elif c == 0x28:  # comment, may nest
            depth, buf = 1, bytearray()
            i += 1
            while i < n and depth:
                ch = raw[i]
                if ch == 0x5C and i + 1 < n:
                    buf.append(raw[i + 1])
                    i += 2
                    continue
                if ch == 0x28:
                    depth += 1
                elif ch == 0x29:
                    depth -= 1
                    if not depth:
                        break
                buf.append(ch)
                i += 1
            i += 1
            out.append((_COMMENT, bytes(buf).strip()))
        elif c in _SPECIALS:
            out.append((_SPECIAL, bytes((c,))))
            i += 1
        else:
            j = i
            while j < n and raw[j] not in b' \t\r\n"(<>,:;@':
                j += 1
            if j == i:  # a stray ')' or similar
                j += 1
            out.append((_ATOM, raw[i:j]))
            i = j
    return out


def parse_address_list(raw: bytes | None) -> tuple[EnvelopeAddress, ...] | None:
    """The ENVELOPE address list for a header value; None when there is no address."""
    if raw is None:
        return None
    toks = _tokens(raw)
    out: list[EnvelopeAddress] = []
    i = 0
    in_group = False
    while i < len(toks) and len(out) < MAX_ADDRESSES:
        i, item = _one(toks, i)
        if item == "group":
            out.append(EnvelopeAddress(None, None, _phrase_of(toks, i), None))
            i = _skip_to_colon(toks, i)
            in_group = True
            continue
        if isinstance(item, EnvelopeAddress):
            out.append(item)
        if i < len(toks) and toks[i] == (_SPECIAL, b";"):
            if in_group:
                out.append(_GROUP_END)
                in_group = False
            i += 1
        elif i < len(toks) and toks[i] == (_SPECIAL, b","):
            i += 1
    if in_group:
        out.append(_GROUP_END)
    return tuple(out) or None


def _phrase_of(toks: list[tuple[int, bytes]], i: int) -> bytes:
    words = []
    while i < len(toks) and toks[i] != (_SPECIAL, b":"):
        if toks[i][0] in (_ATOM, _QUOTED):
            words.append(toks[i][1])
        i += 1
    return b" ".join(words)


def _skip_to_colon(toks: list[tuple[int, bytes]], i: int) -> int:
    while i < len(toks) and toks[i] != (_SPECIAL, b":"):
        i += 1
    return i + 1


def _one(toks: list[tuple[int, bytes]], start: int) -> tuple[int, EnvelopeAddress | str | None]:
    """Parse one mailbox from ``start``; return (next index, address, "group" or None)."""
    phrase: list[bytes] = []
    comment: bytes | None = None
    spec: list[tuple[int, bytes]] = []
    i = start
    while i < len(toks):
        kind, value = toks[i]
        if kind == _SPECIAL and value in (b",", b";"):
            break
        if kind == _SPECIAL and value == b":":
            return start, "group"
        if kind == _SPECIAL and value == b"<":
            i, adl, mailbox, host = _angle(toks, i + 1)
            name = b" ".join(phrase) if phrase else None
            # Anything after '>' up to the next separator (a trailing comment) is ignored.
            while i < len(toks) and toks[i] not in ((_SPECIAL, b","), (_SPECIAL, b";")):
                i += 1
            return i, EnvelopeAddress(name, adl, mailbox, host)
        if kind == _COMMENT:
            comment = value
        else:
            phrase.append(value)
            spec.append(toks[i])
        i += 1
    if not spec:
        return i, None
    mailbox, host = _addr_spec(spec)
    return i, EnvelopeAddress(comment or None, None, mailbox, host)


def _angle(toks: list[tuple[int, bytes]], i: int) -> tuple[int, bytes | None, bytes, bytes]:
    inner: list[tuple[int, bytes]] = []
    while i < len(toks) and toks[i] != (_SPECIAL, b">"):
        if toks[i][0] != _COMMENT:
            inner.append(toks[i])
        i += 1
    i += 1  # past '>'
    adl: bytes | None = None
    colon = next((k for k, t in enumerate(inner) if t == (_SPECIAL, b":")), -1)
    if colon >= 0:  # rfc5322:4.4 obsolete source route "@a,@b:"
        adl = b"".join(v for _, v in inner[:colon])
        inner = inner[colon + 1 :]
    mailbox, host = _addr_spec(inner)
    return i, adl, mailbox, host


def _addr_spec(spec: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    at = max((k for k, t in enumerate(spec) if t == (_SPECIAL, b"@")), default=-1)
    if at < 0:
        return b"".join(_word(t) for t in spec), b""
    local = b"".join(_word(t) for t in spec[:at])
    host = b"".join(_word(t) for t in spec[at + 1 :])
    return local, host


def _word(tok: tuple[int, bytes]) -> bytes:
    kind, value = tok
    if kind == _QUOTED:
        # A quoted local part is sent with its quotes (rfc3501:7.4.2 mailbox is the local-part).
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return value
