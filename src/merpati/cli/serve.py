"""``merpati serve``."""

from __future__ import annotations

import argparse
from typing import Any

from merpati.config import Config


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run every configured listener and the delivery queue"
    )
    # A worker process of `workers = N`, started by merpati serve itself (not for operators).
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from merpati.server.runtime import run, run_worker

    if args.worker:
        return run_worker(config, args.worker)
    return run(config)
