"""``merpati check-config``: load and validate the config, then exit."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.config import Config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("check-config", help="validate the config and exit")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace, config: Config) -> int:
    where = str(config.source) if config.source else "embedded default"
    listeners = sum(
        len(getattr(config.listen, n))
        for n in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")
    )
    print(
        f"config OK ({where}): hostname {config.hostname}, data_dir {config.data_dir}, "
        f"{listeners} listener address(es)"
    )
    return 0
