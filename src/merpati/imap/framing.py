"""Sans-I/O framing of client input into complete commands (rfc9051:2.2, 4.3; rfc7888).

The framer turns a byte stream into events: ``CommandReady`` (a command line with every literal
inline, final CRLF removed), ``NeedContinuation`` (a synchronising literal was announced and is
within the limits: the transport sends ``+``), and ``Rejected`` (a line or literal over its
limit). Limits are checked on the announcement, BEFORE any literal octet is read or buffered:
an over-size synchronising literal is refused without a ``+`` (the client never sends it), an
over-size non-synchronising one (``{n+}``) is skipped without buffering (rfc7888:4), and an
over-long line is discarded up to its CRLF. The framer never holds more than ``max_line`` bytes
of line text plus ``max_literal`` bytes of literal data per command.

It knows nothing of commands or session state; it does no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ~{n} (literal8), {n}, {n+}: at the very end of a line.
_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,20})(\+?)\}\Z")


@dataclass(frozen=True, slots=True)
class CommandReady:
    data: bytes


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    size: int


@dataclass(frozen=True, slots=True)
class Rejected:
    tag: bytes | None  # the command's tag when the line started with one
    kind: str  # "line" (command line too long) or "literal" (literal over the limit)


Event = CommandReady | NeedContinuation | Rejected


def _leading_tag(data: bytes) -> bytes | None:
    sp = data.find(b" ")
    candidate = data[:sp] if sp > 0 else b""
    if 0 < len(candidate) <= 64 and all(
        0x21 <= ch < 0x7F and ch not in b'(){%*"\\+' for ch in candidate
    ):
        return candidate
    return None


class Framer:
    def __init__(self, max_line: int, max_literal: int) -> None:
        self.max_line = max_line  # bytes of command text, literals excluded, per command
        self.max_literal = max_literal  # bytes of literal data per command
        self._buf = bytearray()
        self._scan = 0  # where to resume the CRLF search
        self._parts: list[bytes] = []
        self._line_bytes = 0
        self._literal_bytes = 0
        self._literal_left = 0
        self._discarding = False  # dropping the rest of a rejected command
        self._pending: list[Event] = []

    def feed(self, data: bytes) -> None:
        self._buf += data

    def reset(self) -> None:
        """Forget everything buffered (after STARTTLS: rfc9051:6.2.1)."""
        self.__init__(self.max_line, self.max_literal)  # type: ignore[misc]

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_event(self) -> Event | None:
        """The next complete event, or None when more input is needed."""
        while True:
            if self._pending:
                return self._pending.pop(0)
            if self._literal_left:
                take = min(self._literal_left, len(self._buf))
                if not self._discarding:
                    self._parts.append(bytes(self._buf[:take]))
                del self._buf[:take]
                self._literal_left -= take
                self._scan = 0
                if self._literal_left:
                    return None
            i = self._buf.find(b"\r\n", self._scan)
            if i < 0:
                self._scan = max(0, len(self._buf) - 1)
                if not self._discarding and self._line_bytes + len(self._buf) > self.max_line:
                    self._reject("line")
                if self._discarding:
                    # Keep only a tail long enough to recognise a literal announcement.
                    keep = self._buf[-24:]
                    self._buf = bytearray(keep)
                    self._scan = max(0, len(self._buf) - 1)
                    if self._pending:
                        continue
                return None
            line = bytes(self._buf[:i])
            del self._buf[: i + 2]
            self._scan = 0
            if self._discarding:
                m = _LITERAL_AT_END.search(line)
                if m and m.group(2):  # a non-synchronising literal follows: skip it too
                    self._literal_left = int(m.group(1))
                    continue
                self._end_command()
                continue
            self._line_bytes += len(line) + 2
            if self._line_bytes > self.max_line:
                self._parts.append(line)
                self._reject("line")
                self._after_rejected_line(line)
                continue
            m = _LITERAL_AT_END.search(line)
            if m is None:
                data = b"".join(self._parts) + line
                self._end_command()
                return CommandReady(data)
            size = int(m.group(1))
            sync = not m.group(2)
            self._literal_bytes += size
            self._parts.append(line + b"\r\n")
            if self._literal_bytes > self.max_literal:
                self._reject("literal")
                if sync:
                    self._end_command()  # the client waits for "+" that never comes
                else:
                    self._literal_left = size  # rfc7888:4 skip it, then the rest
                continue
            self._literal_left = size
            if sync:
                return NeedContinuation(size)

    def _after_rejected_line(self, line: bytes) -> None:
        m = _LITERAL_AT_END.search(line)
        if m and m.group(2):
            self._literal_left = int(m.group(1))
        else:
            self._end_command()

    def _reject(self, kind: str) -> None:
        first = self._parts[0] if self._parts else bytes(self._buf[:80])
        self._pending.append(Rejected(_leading_tag(first), kind))
        self._discarding = True
        self._parts = []

    def _end_command(self) -> None:
        self._parts = []
        self._line_bytes = 0
        self._literal_bytes = 0
        self._literal_left = 0
        self._discarding = False
