"""``merpati domain add|remove|list|rotate-dkim``."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.address import display_domain
from merpati.cli.common import open_accounts
from merpati.config import Config
from merpati.errors import OperationalError
from merpati.trust import dkim_keys


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("domain", help="local domains")
    dsub = p.add_subparsers(dest="domain_command", metavar="ACTION", parser_class=type(p))
    dsub.required = True
    a = dsub.add_parser("add", help="add a local domain (creates its DKIM keys)")
    a.add_argument("domain")
    a.set_defaults(func=_add)
    r = dsub.add_parser("remove", help="remove a local domain with no accounts")
    r.add_argument("domain")
    r.set_defaults(func=_remove)
    ls = dsub.add_parser("list", help="list local domains")
    ls.set_defaults(func=_list)
    rot = dsub.add_parser("rotate-dkim", help="add a new DKIM selector (the old stays published)")
    rot.add_argument("domain")
    rot.set_defaults(func=_rotate)


def _add(args: argparse.Namespace, config: Config) -> int:
    accounts = open_accounts(config)
    d = accounts.add_domain(args.domain)
    selectors = dkim_keys.create_keys(config.data_dir, d)
    extra = f" (DKIM selectors: {', '.join(selectors)})" if selectors else ""
    print(f"domain {d} added{extra}; publish its DNS records: merpati dns {d}")
    return 0


def _remove(args: argparse.Namespace, config: Config) -> int:
    d = open_accounts(config).remove_domain(args.domain)
    print(f"domain {d} removed")
    return 0


def _list(args: argparse.Namespace, config: Config) -> int:
    for d in open_accounts(config).domains():
        shown = display_domain(d)
        print(d if shown == d else f"{d} ({shown})")
    return 0


def _rotate(args: argparse.Namespace, config: Config) -> int:
    accounts = open_accounts(config)
    if not accounts.is_local_domain(args.domain):
        raise OperationalError(f"unknown domain {args.domain}")
    selectors = dkim_keys.rotate(config.data_dir, args.domain)
    print(
        f"DKIM selectors of {args.domain}: {', '.join(selectors)};"
        f" publish: merpati dns {args.domain}"
    )
    return 0
