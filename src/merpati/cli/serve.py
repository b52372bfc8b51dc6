"""``merpati serve``."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.config import Config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run every configured listener and the delivery queue"
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from merpati.server.runtime import run

    return run(config)
