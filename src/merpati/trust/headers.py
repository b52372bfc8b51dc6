"""Just enough rfc5322 header handling on raw message bytes for the trust checks: split the
header section, iterate fields (folded lines kept together, bytes untouched), drop fields,
fold a new field, and find the author domain of From:.

It does not decode encoded-words or MIME; the body is never looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from email.policy import SMTP

__all__ = [
    "HeaderField",
    "fold",
    "from_domains",
    "iter_fields",
    "remove_fields",
    "split_message",
]

_END_OF_HEADER = re.compile(rb"\r?\n\r?\n")


class HeaderField:
    """One header field as it appears in the message: ``raw`` includes its line ends."""

    __slots__ = ("name", "raw")

    def __init__(self, name: str, raw: bytes) -> None:
        self.name = name
        self.raw = raw

    @property
    def value(self) -> str:
        """The unfolded value after the colon, whitespace-trimmed (invalid UTF-8 replaced)."""
        _, _, rest = self.raw.partition(b":")
        unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", rest).strip()
        return unfolded.decode("utf-8", "replace")


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header section including its last line end, the rest: blank line and body)."""
    m = _END_OF_HEADER.search(message)
    if m is None:
        return message, b""
    cut = m.start() + (2 if message[m.start() : m.start() + 2] == b"\r\n" else 1)
    return message[:cut], message[cut:]


def iter_fields(header: bytes) -> Iterator[HeaderField]:
    """Fields of a header section; a line that is neither a field nor a continuation is
    yielded as a field with an empty name (so callers keep it byte-exact)."""
    lines = header.splitlines(keepends=True)
    current: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            yield _field(b"".join(current))
        current = [line]
    if current:
        yield _field(b"".join(current))


def _field(raw: bytes) -> HeaderField:
    name, colon, _ = raw.partition(b":")
    if not colon or not re.fullmatch(rb"[\x21-\x39\x3b-\x7e]+", name.rstrip(b" \t")):
        return HeaderField("", raw)
    return HeaderField(name.rstrip(b" \t").decode("ascii").lower(), raw)


def remove_fields(message: bytes, drop: Callable[[HeaderField], bool]) -> bytes:
    header, rest = split_message(message)
    kept = [f.raw for f in iter_fields(header) if not drop(f)]
    return b"".join(kept) + rest


def fold(name: str, value: str, width: int = 78) -> bytes:
    """``Name: value`` folded at ``; `` and spaces to lines of about ``width``, CRLF ended."""
    words = value.split(" ")
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > width and line.strip():
            lines.append(line)
            line = "\t" + word
        else:
            line = f"{line} {word}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def from_domains(message: bytes) -> list[str] | None:
    """The domains of the author addresses in From: (rfc7489:6.6.1), lowercased; None when
    there is not exactly one From: field or it cannot be parsed."""
    header, _ = split_message(message)
    froms = [f for f in iter_fields(header) if f.name == "from"]
    if len(froms) != 1:
        return None
    try:
        parsed = BytesHeaderParser(policy=SMTP).parsebytes(froms[0].raw + b"\r\n")
        value = parsed["from"]
        addresses: tuple[Address, ...] = value.addresses if value is not None else ()
    except (ValueError, IndexError, TypeError, AttributeError):
        return None
    domains: list[str] = []
    for a in addresses:
        name = a.domain.rstrip(".").lower()
        if not name:
            return None
        try:
            domains.append(name if name.isascii() else name.encode("idna").decode("ascii"))
        except UnicodeError:
            return None
    return domains or None
