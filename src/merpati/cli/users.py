"""``merpati user add|passwd|remove|list``."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.auth.passwords import generate_password
from merpati.cli.common import open_accounts, read_password_stdin, with_mailstore
from merpati.config import Config, parse_size
from merpati.errors import UsageError
from merpati.mailstore.api import MailStore


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("user", help="accounts")
    usub = p.add_subparsers(dest="user_command", metavar="ACTION", parser_class=type(p))
    usub.required = True
    a = usub.add_parser("add", help="create an account")
    a.add_argument("address")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--quota", help="mailbox quota, e.g. 2GB (default: none)")
    a.set_defaults(func=_add)
    pw = usub.add_parser("passwd", help="set an account's password")
    pw.add_argument("address")
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(func=_passwd)
    q = usub.add_parser("quota", help="set an account's quota (0 or 'none' for no limit)")
    q.add_argument("address")
    q.add_argument("size")
    q.set_defaults(func=_quota)
    r = usub.add_parser("remove", help="remove an account and its mail")
    r.add_argument("address")
    r.add_argument("--keep-mail", action="store_true", help="leave the mail files on disk")
    r.set_defaults(func=_remove)
    ls = usub.add_parser("list", help="list accounts")
    ls.add_argument("domain", nargs="?")
    ls.set_defaults(func=_list)


def _parse_quota(text: str | None) -> int | None:
    if text is None or text.lower() in ("none", "0"):
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--quota: {exc}") from None


def _add(args: argparse.Namespace, config: Config) -> int:
    quota = _parse_quota(args.quota)
    password = read_password_stdin() if args.password_stdin else generate_password()
    accounts = open_accounts(config)
    account = accounts.add_account(args.address, password, quota)

    async def create(store: MailStore) -> None:
        await store.create_account(account.address)

    with_mailstore(config, accounts, create)
    if args.password_stdin:
        print(f"account {account.address} created")
    else:
        print(f"account {account.address} created\npassword: {password}   (shown once)")
    return 0


def _passwd(args: argparse.Namespace, config: Config) -> int:
    password = read_password_stdin() if args.password_stdin else generate_password()
    a = open_accounts(config).set_password(args.address, password)
    if args.password_stdin:
        print(f"password of {a} changed")
    else:
        print(f"password of {a} changed\npassword: {password}   (shown once)")
    return 0


def _quota(args: argparse.Namespace, config: Config) -> int:
    quota = _parse_quota(args.size)
    open_accounts(config).set_quota(args.address, quota)
    print(f"quota of {args.address}: {'none' if quota is None else f'{quota} bytes'}")
    return 0


def _remove(args: argparse.Namespace, config: Config) -> int:
    accounts = open_accounts(config)
    a = accounts.remove_account(args.address)
    if not args.keep_mail:

        async def purge(store: MailStore) -> None:
            await store.remove_account(a)

        with_mailstore(config, accounts, purge)
    print(f"account {a} removed" + (" (mail kept on disk)" if args.keep_mail else ""))
    return 0


def _list(args: argparse.Namespace, config: Config) -> int:
    for acc in open_accounts(config).accounts(args.domain):
        quota = "" if acc.quota is None else f"  quota={acc.quota}"
        print(f"{acc.address}{quota}")
    return 0
