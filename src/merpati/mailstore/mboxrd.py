"""mboxrd reading and writing (the mbox variant where every ``>*From `` line is quoted).

Messages are stored with CRLF line ends; in the mbox file they get LF (the Unix convention)
and come back with CRLF. Flags travel in the ``Status:`` (R, O), ``X-Status:`` (A, F, T, D)
and ``X-Keywords:`` header fields, as mutt and Dovecot write them; the internal date in the
``From `` line (UTC). Pure functions on bytes; the CLI does the file handling. A message that
does not end with a line break gains one on the way through an mbox file.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterator

_STATUS = {"\\Seen": "R"}
_XSTATUS = {"\\Answered": "A", "\\Flagged": "F", "\\Deleted": "T", "\\Draft": "D"}
_FLAG_FIELDS = (b"status", b"x-status", b"x-keywords")
_FROM_QUOTED = re.compile(rb"^(>*From )", re.MULTILINE)
_FROM_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_FROM_LINE = re.compile(rb"^From \S+ +(.+)$")


def write_message(data: bytes, flags: frozenset[str], internaldate: float) -> bytes:
    """One mbox entry: From line, flag headers, quoted message, blank line."""
    text = data.replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    status = "".join(v for k, v in _STATUS.items() if k in flags) + "O"
    xstatus = "".join(v for k, v in _XSTATUS.items() if k in flags)
    keywords = " ".join(sorted(f for f in flags if not f.startswith("\\")))
    head = b"Status: " + status.encode() + b"\n"
    if xstatus:
        head += b"X-Status: " + xstatus.encode() + b"\n"
    if keywords:
        head += b"X-Keywords: " + keywords.encode("utf-8") + b"\n"
    stamp = time.asctime(time.gmtime(internaldate)).encode()
    return b"From MAILER-DAEMON " + stamp + b"\n" + head + _FROM_QUOTED.sub(rb">\1", text) + b"\n"


def read_messages(blob: bytes) -> Iterator[tuple[bytes, frozenset[str], float | None]]:
    """(message with CRLF line ends, flags, internal date or None) for each entry."""
    starts = [m.start() for m in re.finditer(rb"^From ", blob, re.MULTILINE)]
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(blob)
        entry = blob[start:end]
        nl = entry.find(b"\n")
        from_line, body = (entry, b"") if nl < 0 else (entry[:nl], entry[nl + 1 :])
        if body.endswith(b"\n\n"):
            body = body[:-1]  # the separating blank line
        body = _FROM_UNQUOTE.sub(rb"\1", body)
        body, flags = _take_flags(body)
        yield body.replace(b"\n", b"\r\n"), flags, _date(from_line.rstrip(b"\r"))


def _date(line: bytes) -> float | None:
    m = _FROM_LINE.match(line)
    if not m:
        return None
    try:
        return float(
            calendar.timegm(time.strptime(m.group(1).decode().strip(), "%a %b %d %H:%M:%S %Y"))
        )
    except (ValueError, UnicodeDecodeError):
        return None


def _take_flags(body: bytes) -> tuple[bytes, frozenset[str]]:
    """Remove Status/X-Status/X-Keywords from the top-level header; return their flags."""
    end = body.find(b"\n\n")
    header = body if end < 0 else body[: end + 1]
    rest = b"" if end < 0 else body[end + 1 :]
    kept: list[bytes] = []
    flags: set[str] = set()
    skipping = False
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = b":" in line and name in _FLAG_FIELDS
        if not skipping:
            kept.append(line)
            continue
        value = line.split(b":", 1)[1].decode("utf-8", "replace").strip()
        if name == b"status":
            flags.update(k for k, v in _STATUS.items() if v in value)
        elif name == b"x-status":
            flags.update(k for k, v in _XSTATUS.items() if v in value)
        else:
            flags.update(w for w in value.replace(",", " ").split() if w)
    return b"".join(kept) + rest, frozenset(flags)
