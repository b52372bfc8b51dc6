"""``merpati alias add|remove|list``: an address (or ``@domain`` catch-all) -> targets."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.cli.common import open_accounts
from merpati.config import Config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("alias", help="aliases and catch-alls")
    asub = p.add_subparsers(dest="alias_command", metavar="ACTION", parser_class=type(p))
    asub.required = True
    a = asub.add_parser("add", help="ADDRESS (or @domain) expands to local or remote TARGETs")
    a.add_argument("address")
    a.add_argument("targets", nargs="+", metavar="TARGET")
    a.set_defaults(func=_add)
    r = asub.add_parser("remove", help="remove an alias")
    r.add_argument("address")
    r.set_defaults(func=_remove)
    ls = asub.add_parser("list", help="list aliases")
    ls.set_defaults(func=_list)


def _add(args: argparse.Namespace, config: Config) -> int:
    address, targets = open_accounts(config).add_alias(args.address, list(args.targets))
    print(f"alias {address} -> {', '.join(targets)}")
    return 0


def _remove(args: argparse.Namespace, config: Config) -> int:
    print(f"alias {open_accounts(config).remove_alias(args.address)} removed")
    return 0


def _list(args: argparse.Namespace, config: Config) -> int:
    for address, targets in open_accounts(config).aliases():
        print(f"{address} -> {', '.join(targets)}")
    return 0
