"""POP3 command lines: keyword and arguments, checked against one table of arities.

Does: split a command line (rfc1939:3: a case-insensitive keyword of 3-4 printable characters,
then arguments separated by single spaces) into a frozen ``Command``; check the number of
arguments per command; parse message numbers and line counts.
Does not: know which state allows which command (``session``), or any reply text.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ARITY",
    "Command",
    "CommandError",
    "parse_command",
    "parse_count",
    "parse_msgnum",
]

# keyword -> (minimum, maximum) number of arguments. rfc1939:5-7, rfc2449:5, rfc2595:4,
# rfc5034:4, rfc6856:2. PASS is special: its one argument is the rest of the line, spaces and
# all (rfc1939:7 "the server may treat spaces in the argument as part of the password").
ARITY: dict[str, tuple[int, int]] = {
    "USER": (1, 1),
    "PASS": (1, 1),
    "AUTH": (0, 2),
    "CAPA": (0, 0),
    "STLS": (0, 0),
    "UTF8": (0, 0),
    "QUIT": (0, 0),
    "STAT": (0, 0),
    "LIST": (0, 1),
    "RETR": (1, 1),
    "DELE": (1, 1),
    "NOOP": (0, 0),
    "RSET": (0, 0),
    "TOP": (2, 2),
    "UIDL": (0, 1),
}

# rfc1939:3 arguments are at most 40 characters; we accept longer ones (UTF-8 user names,
# passwords, base64 initial responses) up to the line limit, which bounds them anyway.
_MAX_NUMBER_DIGITS = 9  # message numbers and line counts fit in 9 digits


class CommandError(ValueError):
    """The line is not a well-formed command; ``unknown`` tells an unknown keyword apart."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # upper-case keyword
    args: tuple[bytes, ...]

    def __bytes__(self) -> bytes:
        return b" ".join((self.name.encode("ascii"), *self.args)) + b"\r\n"


def parse_command(line: bytes) -> Command:
    """Parse one line (without its line end). Raises CommandError."""
    keyword, sep, rest = line.partition(b" ")
    if not keyword or not keyword.isalnum() or not keyword.isascii() or len(keyword) > 4:
        raise CommandError("unknown command", unknown=True)
    name = keyword.decode("ascii").upper()
    arity = ARITY.get(name)
    if arity is None:
        raise CommandError("unknown command", unknown=True)
    lo, hi = arity
    if name == "PASS":
        args: tuple[bytes, ...] = (rest,) if sep and rest else ()
    elif not sep:
        args = ()
    else:
        # Tolerate runs of spaces and trailing spaces; some clients send "LIST " or "TOP 1  0".
        args = tuple(a for a in rest.split(b" ") if a)
    if any(b"\x00" in a or b"\t" in a or b"\r" in a for a in args):
        raise CommandError("invalid characters in arguments")
    if not lo <= len(args) <= hi:
        if lo == hi:
            raise CommandError(f"{name} takes {lo} argument{'s' if lo != 1 else ''}")
        raise CommandError(f"{name} takes {lo} to {hi} arguments")
    return Command(name, args)


def parse_msgnum(arg: bytes) -> int:
    """A message number: 1 or more, decimal digits only. Raises CommandError."""
    if not arg.isdigit() or not arg.isascii() or len(arg) > _MAX_NUMBER_DIGITS:
        raise CommandError("invalid message number")
    n = int(arg)
    if n < 1:
        raise CommandError("invalid message number")
    return n


def parse_count(arg: bytes) -> int:
    """A non-negative line count for TOP. Raises CommandError."""
    if not arg.isdigit() or not arg.isascii() or len(arg) > _MAX_NUMBER_DIGITS:
        raise CommandError("invalid line count")
    return int(arg)
