"""POP3 line framing: bytes in, complete lines (or "too long" markers) out.

Does: split the client's byte stream into lines at LF (a preceding CR is dropped), enforce a
per-line octet limit before buffering more than that limit, and, for an over-long line, drain
the rest of it and report it once, so that the session stays in step with the client.
Does not: interpret commands, decode text, or know about sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMAND_LINE_LIMIT", "SASL_LINE_LIMIT", "LineReader", "LineTooLong"]

# rfc2449:4 a command line is at most 255 octets including the terminating CRLF.
COMMAND_LINE_LIMIT = 255
# rfc5034:4 the 255-octet limit binds the AUTH command; responses to challenges may be longer
# (a PLAIN response with a long password). 8 KiB is far above any PLAIN/LOGIN response.
SASL_LINE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went over the limit; it has been (or is being) discarded up to its end."""

    limit: int


class LineReader:
    """Incremental splitter. ``feed`` bytes, then ``next_line`` until it returns None.

    Holds at most ``limit`` octets of an incomplete line: past that it switches to discarding
    until the next LF and yields one ``LineTooLong``. Complete lines waiting in the buffer
    (pipelined commands, rfc2449:6.6) are bounded by what the transport feeds per read.
    """

    __slots__ = ("_buf", "_discarding", "limit")

    def __init__(self, limit: int = COMMAND_LINE_LIMIT) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Forget everything buffered (after STLS: rfc2595:4 nothing sent in plaintext may
        be acted on once TLS is up)."""
        self._buf.clear()
        self._discarding = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_line(self) -> bytes | LineTooLong | None:
        """The next complete line without its line end, a LineTooLong, or None (need data)."""
        while True:
            end = self._buf.find(b"\n")
            if self._discarding:
                if end < 0:
                    self._buf.clear()
                    return None
                del self._buf[: end + 1]
                self._discarding = False
                return LineTooLong(self.limit)
            if end < 0:
                if len(self._buf) >= self.limit:
                    # Over the limit without a line end: drop what we have, drain the rest.
                    self._buf.clear()
                    self._discarding = True
                    continue
                return None
            if end + 1 > self.limit:
                del self._buf[: end + 1]
                return LineTooLong(self.limit)
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            return line
