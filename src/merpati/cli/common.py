"""Helpers shared by CLI commands: opening the stores of the configured data dir."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from merpati.accounts.store import AccountStore
from merpati.config import Config
from merpati.errors import OperationalError, UsageError
from merpati.mailstore.api import MailStore

T = TypeVar("T")


def open_accounts(config: Config) -> AccountStore:
    try:
        return AccountStore.open(config.data_dir)
    except OSError as exc:
        raise OperationalError(f"cannot open data directory {config.data_dir}: {exc}") from None


def with_mailstore(
    config: Config, accounts: AccountStore, fn: Callable[[MailStore], Awaitable[T]]
) -> T:
    """Run ``fn`` against the mail store of the data dir, then close it."""
    from merpati.mailstore import open_mailstore

    async def go() -> T:
        store = open_mailstore(config, accounts.quota)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: no password on standard input")
    return password
