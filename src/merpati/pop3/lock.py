"""Exclusive POP3 maildrop locks: one POP3 session per account at a time (rfc1939:8).

Does: grant a lock per account that is exclusive within this process (a set of held accounts)
and across processes sharing the data directory (``flock`` on a file under
``<data_dir>/pop3-locks/``, non-blocking, released by the kernel if the process dies).
Does not: stop IMAP sessions from changing the INBOX meanwhile; POP3 copes with that (a
message expunged through IMAP reads as "no longer exists").
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

__all__ = ["MaildropLock", "MaildropLocks"]


class MaildropLock:
    __slots__ = ("_fd", "_owner", "account")

    def __init__(self, owner: MaildropLocks, account: str, fd: int | None) -> None:
        self._owner = owner
        self._fd = fd
        self.account = account

    def release(self) -> None:
        """Idempotent."""
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        self._owner._held.discard(self.account)


class MaildropLocks:
    """The locks of one server process. ``directory`` None: in-process locking only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._held: set[str] = set()

    def _path(self, account: str) -> Path:
        assert self.directory is not None
        digest = hashlib.sha256(account.encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{digest}.lock"

    def acquire(self, account: str) -> MaildropLock | None:
        """The lock, or None if another session (here or in another process) holds it.
        Raises OSError if the lock file cannot be created."""
        if account in self._held:
            return None
        fd: int | None = None
        if self.directory is not None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._path(account), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError:
                os.close(fd)
                raise
        self._held.add(account)
        return MaildropLock(self, account, fd)
