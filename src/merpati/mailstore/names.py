"""Rules shared by every mail store backend: folder-name checks, flag normalisation, UIDVALIDITY.

Pure functions, no I/O. Backends call these so that both give the same answers to the same
requests (the memory backend is the reference semantics; tests run against both).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable

from merpati.mailstore.api import SEPARATOR, SYSTEM_FLAGS, InvalidName, TooManyKeywords

MAX_NAME_LENGTH = 255  # characters of a full folder name
MAX_NAME_DEPTH = 32  # hierarchy levels
MAX_KEYWORDS = 64  # keywords on one message (more: TooManyKeywords, IMAP NO [LIMIT])
MAX_KEYWORD_LENGTH = 64

_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
# rfc3501:9 atom-specials and list-wildcards cannot be in a keyword.
_KEYWORD = re.compile(r"[^\x00-\x20\x7f-\uffff(){%*\"\\\]]+")
_uidvalidity_counter = itertools.count()


def normalise_folder(name: str) -> str:
    """The canonical form of a folder name, or InvalidName.

    "INBOX" is case-insensitive (rfc3501:5.1), also as the first level of a hierarchy.
    """
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidName("folder name is empty or too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "*" in name or "%" in name:
        raise InvalidName("folder name contains characters that are not allowed")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_NAME_DEPTH:
        raise InvalidName("folder hierarchy is too deep")
    if any(p in ("", ".", "..") or p != p.strip() for p in parts):
        raise InvalidName("folder name has an empty or reserved level")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return SEPARATOR.join(parts)


def parents(name: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def is_under(name: str, ancestor: str) -> bool:
    return name.startswith(ancestor + SEPARATOR)


def normalise_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in their canonical case; \\Recent and unknown \\-flags dropped (they cannot
    be stored, rfc3501:2.3.2); keywords kept as sent when they are valid atoms. More than
    MAX_KEYWORDS keywords raise TooManyKeywords (rfc5530:3 LIMIT) rather than losing some."""
    out: set[str] = set()
    keywords = 0
    for flag in flags:
        if flag.startswith("\\"):
            system = _SYSTEM_BY_LOWER.get(flag.lower())
            if system is not None:
                out.add(system)
        elif len(flag) <= MAX_KEYWORD_LENGTH and _KEYWORD.fullmatch(flag) and flag not in out:
            out.add(flag)
            keywords += 1
            if keywords > MAX_KEYWORDS:
                raise TooManyKeywords("too many keywords on one message")
    return frozenset(out)


def apply_flags(current: frozenset[str], mode: str, flags: frozenset[str]) -> frozenset[str]:
    if mode == "add":
        new = current | flags
        if len(new) > MAX_KEYWORDS and sum(1 for f in new if f[0] != "\\") > MAX_KEYWORDS:
            raise TooManyKeywords("too many keywords on one message")
        return new
    if mode == "remove":
        return current - flags
    return flags


def new_uidvalidity() -> int:
    """A UIDVALIDITY that grows over time (rfc3501:2.3.1.1) and fits in 32 bits."""
    return (int(time.time()) + next(_uidvalidity_counter)) % 0xFFFFFFFF or 1
