"""CLI commands for mail: ``export``, ``import``, ``backup``, ``restore`` (INTERFACE.md).

Export and import go through the mail store API of the configured data dir, so they work while
the server runs (two processes on one data dir are safe). Backup works while the server runs
too; restore needs an empty data dir. Expected failures are one line (OperationalError).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from merpati.config import Config
from merpati.errors import OperationalError
from merpati.mailstore.api import MailStore, MailStoreError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="export an account's mail (Maildir++ or mbox)")
    p.add_argument("address", help="the account")
    p.add_argument("dest", help="directory to write (must be new or empty)")
    p.add_argument("--format", choices=("maildir", "mbox"), default="maildir")
    p.set_defaults(func=export_command)

    p = subparsers.add_parser(
        "import", help="import mail into an account (Maildir, Maildir++, mbox)"
    )
    p.add_argument("address", help="the account")
    p.add_argument(
        "src", help="a Maildir or Maildir++ directory, an mbox file, or a directory of .mbox files"
    )
    p.set_defaults(func=import_command)

    p = subparsers.add_parser("backup", help="a consistent copy of the whole data directory")
    p.add_argument("dest", help="directory to write (must be new or empty)")
    p.set_defaults(func=backup_command)

    p = subparsers.add_parser("restore", help="fill an empty data directory from a backup")
    p.add_argument("src", help="a directory written by `merpati backup`")
    p.set_defaults(func=restore_command)


def _account(config: Config, address: str) -> tuple[Any, str]:
    from merpati.cli.common import open_accounts

    accounts = open_accounts(config)
    account = accounts.get_account(address)
    if account is None:
        raise OperationalError(f"no account {address}")
    return accounts, account.address


def export_command(args: argparse.Namespace, config: Config) -> int:
    from merpati.cli.common import with_mailstore
    from merpati.mailstore.transfer import export_account

    accounts, address = _account(config, args.address)
    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OperationalError(f"{dest} exists and is not an empty directory")

    async def go(store: MailStore) -> tuple[int, int]:
        return await export_account(store.mailbox(address), dest, args.format)

    try:
        folders, messages = with_mailstore(config, accounts, go)
    except (MailStoreError, OSError) as exc:
        raise OperationalError(f"export failed: {exc}") from None
    print(f"exported {messages} messages in {folders} folders of {address} to {dest}")
    return 0


def import_command(args: argparse.Namespace, config: Config) -> int:
    from merpati.cli.common import with_mailstore
    from merpati.mailstore.transfer import import_account

    accounts, address = _account(config, args.address)
    src = Path(args.src)
    if not src.exists():
        raise OperationalError(f"{src} does not exist")

    async def go(store: MailStore) -> tuple[int, int]:
        return await import_account(store.mailbox(address), src)

    try:
        folders, messages = with_mailstore(config, accounts, go)
    except (MailStoreError, OSError) as exc:
        raise OperationalError(f"import failed: {exc}") from None
    print(f"imported {messages} messages into {folders} folders of {address}")
    return 0


def backup_command(args: argparse.Namespace, config: Config) -> int:
    from merpati.mailstore.backup import backup

    try:
        databases, files = backup(config.data_dir, Path(args.dest))
    except OSError as exc:
        raise OperationalError(f"backup failed: {exc}") from None
    print(f"backed up {databases} databases and {files} files to {args.dest}")
    return 0


def restore_command(args: argparse.Namespace, config: Config) -> int:
    from merpati.mailstore.backup import restore

    try:
        files = restore(Path(args.src), config.data_dir)
    except OSError as exc:
        raise OperationalError(f"restore failed: {exc}") from None
    print(f"restored {files} files into {config.data_dir}")
    return 0
