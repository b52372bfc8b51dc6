"""The POP3 maildrop of one session: the INBOX as it was at login, with deletion marks.

Does: number the snapshot's messages 1..N for the whole session (rfc1939:5), keep the set of
messages marked by DELE, answer STAT/LIST/UIDL figures, and list the UIDs to expunge at QUIT.
Does not: touch the store (the transport reads, flags and expunges), or see mail delivered
after login (it appears in the next session).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from merpati.mailstore.api import MessageInfo

__all__ = ["Maildrop", "NoSuchMessageNumber"]


class NoSuchMessageNumber(LookupError):
    """Out of range or marked deleted; the message is the reply text."""


class Maildrop:
    __slots__ = ("_deleted", "_messages")

    def __init__(self, messages: Sequence[MessageInfo]) -> None:
        self._messages: tuple[MessageInfo, ...] = tuple(messages)
        self._deleted: set[int] = set()  # message numbers

    def __len__(self) -> int:
        return len(self._messages)

    def get(self, number: int) -> MessageInfo:
        """The message numbered ``number``; rfc1939:5 deleted ones may not be referred to."""
        if not 1 <= number <= len(self._messages):
            raise NoSuchMessageNumber("no such message")
        if number in self._deleted:
            raise NoSuchMessageNumber(f"message {number} already deleted")
        return self._messages[number - 1]

    def delete(self, number: int) -> None:
        self.get(number)
        self._deleted.add(number)

    def reset(self) -> None:
        self._deleted.clear()

    def live(self) -> Iterator[tuple[int, MessageInfo]]:
        """(number, message) for every message not marked deleted, in order."""
        for i, info in enumerate(self._messages, 1):
            if i not in self._deleted:
                yield i, info

    def after(self, number: int, limit: int) -> Iterator[MessageInfo]:
        """Up to ``limit`` messages not marked deleted that follow ``number`` (read-ahead)."""
        found = 0
        for n in range(number + 1, len(self._messages) + 1):
            if found >= limit:
                return
            if n not in self._deleted:
                found += 1
                yield self._messages[n - 1]

    def stat(self) -> tuple[int, int]:
        """(count, octets) of messages not marked deleted (rfc1939:5 STAT)."""
        count = size = 0
        for _, info in self.live():
            count += 1
            size += info.size
        return count, size

    def deleted_uids(self) -> tuple[int, ...]:
        return tuple(sorted(self._messages[n - 1].uid for n in self._deleted))
