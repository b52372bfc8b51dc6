"""``merpati quickstart ADDRESS [--hostname FQDN] [--public]``.

Writes a config if none exists (``--config`` path, else ./merpati.toml), creates the domain and
the account, and prints the password once, the DNS records to publish and the client settings.
By default the written config keeps the embedded default's loopback ports (2000 + standard), so
``make serve`` works at once without root; ``--public`` writes the standard ports on all
interfaces for a real deployment.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from merpati.address import AddressError, parse_address
from merpati.auth.passwords import generate_password
from merpati.cli.common import open_accounts, read_password_stdin, with_mailstore
from merpati.clientsettings import client_settings
from merpati.config import Config, find_config_path, load_config
from merpati.errors import OperationalError, UsageError
from merpati.mailstore.api import MailStore
from merpati.trust import dkim_keys
from merpati.trust.records import zone_lines

_PUBLIC_LISTEN = """[listen]
smtp = ["0.0.0.0:25", "[::]:25"]
submission = ["0.0.0.0:587", "[::]:587"]
submissions = ["0.0.0.0:465", "[::]:465"]
imap = ["0.0.0.0:143", "[::]:143"]
imaps = ["0.0.0.0:993", "[::]:993"]
pop3 = ["0.0.0.0:110", "[::]:110"]
pop3s = ["0.0.0.0:995", "[::]:995"]
http = ["127.0.0.1:8025"]
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "quickstart", help="write a config, create a domain and an account, print what to do next"
    )
    p.add_argument("address")
    p.add_argument("--hostname", help="this server's host name (default: mail.DOMAIN)")
    p.add_argument("--public", action="store_true", help="listen on the standard ports publicly")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=_quickstart, config_may_be_missing=True)


def _config_text(hostname: str, public: bool) -> str:
    text = (
        "# Merpati configuration, written by `merpati quickstart`.\n"
        "# Every key: see INTERFACE.md / README.md.\n"
        f'hostname = "{hostname}"\n'
        'data_dir = "merpati-data"\n'
    )
    if os.geteuid() == 0 and public:
        text += 'user = "merpati"  # runs as this user after binding the ports\n'
    text += "\n" + (
        _PUBLIC_LISTEN
        if public
        else "# [listen]: the loopback defaults 2025 2587 2465 2143 2993 2110 2995 8025.\n"
    )
    text += (
        "\n[tls]\n"
        '# cert = "/etc/letsencrypt/live/' + hostname + '/fullchain.pem"\n'
        '# key = "/etc/letsencrypt/live/' + hostname + '/privkey.pem"\n'
    )
    return text


def _quickstart(args: argparse.Namespace, config: Config) -> int:
    try:
        addr = parse_address(args.address)
    except AddressError as exc:
        raise OperationalError(f"bad address {args.address}: {exc}") from None
    domain = addr.domain
    hostname = args.hostname or (domain if domain == "localhost" else f"mail.{domain}")
    path = find_config_path(getattr(args, "config_sub", None) or args.config) or Path(
        "merpati.toml"
    )
    if path.exists():
        print(f"using the existing config {path}")
    else:
        try:
            path.write_text(_config_text(hostname, args.public))
        except OSError as exc:
            raise OperationalError(f"cannot write config {path}: {exc.strerror}") from None
        print(f"wrote config {path}")
    config = load_config(path)
    if args.hostname and config.hostname != args.hostname.lower():
        raise UsageError(f"{path} already sets hostname {config.hostname}")
    accounts = open_accounts(config)
    if not accounts.is_local_domain(domain):
        accounts.add_domain(domain)
        dkim_keys.create_keys(config.data_dir, domain)
    password = read_password_stdin() if args.password_stdin else generate_password()
    account = accounts.add_account(str(addr), password)

    async def make(store: MailStore) -> None:
        await store.create_account(account.address)

    with_mailstore(config, accounts, make)
    print(f"\naccount {account.address} created")
    if not args.password_stdin:
        print(f"password: {password}   (shown once)")
    print("\nDNS records to publish for " + domain + ":\n")
    for line in zone_lines(config, domain):
        print("  " + line)
    print("\nclient settings:\n")
    print(client_settings(config, account.address))
    print("\nstart the server with: merpati serve   (or: make serve)")
    return 0
