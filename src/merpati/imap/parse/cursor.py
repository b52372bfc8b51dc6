"""The byte cursor every grammar rule reads from, and the parser's one error type.

Does not know any IMAP rule beyond single characters and SP; rules live in sibling modules.
"""

from __future__ import annotations


class ParseError(Exception):
    """The client's command does not follow the grammar; answered with a tagged BAD.

    The message is ours (never client bytes), so it is safe to send to the client.
    """


class LimitExceeded(ParseError):
    """The command follows the grammar as far as it was read but goes past one of our bounds
    (ranges in a sequence set, flags, search keys, header fields...): answered with a tagged
    ``NO [LIMIT]`` (rfc5530:3, rfc9051:7.1), not BAD, since the client did nothing wrong."""


class Cursor:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def peek(self, n: int = 1) -> bytes:
        return self.buf[self.pos : self.pos + n]

    def startswith_ci(self, word: bytes) -> bool:
        """True when the next bytes are ``word`` (ASCII case-insensitive)."""
        return self.buf[self.pos : self.pos + len(word)].upper() == word

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ParseError("unexpected end of command")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def expect(self, token: bytes, what: str = "") -> None:
        if self.buf[self.pos : self.pos + len(token)].upper() != token.upper():
            raise ParseError(f"expected {what or token.decode('ascii')}")
        self.pos += len(token)

    def accept(self, token: bytes) -> bool:
        """Consume ``token`` (case-insensitive) if it is next."""
        if self.buf[self.pos : self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def sp(self) -> None:
        # rfc9051:9 SP is exactly one space; several are a syntax error.
        if self.buf[self.pos : self.pos + 1] != b" ":
            raise ParseError("expected a space")
        self.pos += 1

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ParseError("unexpected characters at the end of the command")
