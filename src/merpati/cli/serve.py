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
    # The delivery agent (merpati.delivery.agent), likewise started by merpati serve.
    p.add_argument("--delivery-agent", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from merpati.server.runtime import run, run_worker

    if args.delivery_agent:
        from merpati.delivery.agent import run_agent

        return run_agent(config)
    if args.worker:
        return run_worker(config, args.worker)
    return run(config)
