"""Entry point of the ``merpati`` command.

Each command group lives in its own module with ``register(subparsers)``; a parser it adds sets
``func=handler`` where ``handler(args, config) -> int``. Errors: ``OperationalError`` prints one
line and exits 1, ``UsageError``/``ConfigError`` exit 2. Never a traceback for an expected error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from merpati.config import ConfigError, find_config_path, load_config
from merpati.errors import OperationalError, UsageError

# Modules that add commands, each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "merpati.cli.serve",
    "merpati.cli.quickstart",
    "merpati.cli.check_config",
    "merpati.cli.domains",
    "merpati.cli.users",
    "merpati.cli.aliases",
    "merpati.queue.cli",
    "merpati.trust.cli",
    "merpati.mailstore.cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(2, f"merpati: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="merpati", description="Merpati, an all-in-one mail server")
    parser.add_argument("--config", help="config file (default: $MERPATI_CONFIG, ./merpati.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        _accept_config_after(command)
    return parser


def _accept_config_after(parser: argparse.ArgumentParser) -> None:
    """--config is accepted after the command too: `merpati user add X --config F`."""
    parser.add_argument("--config", dest="config_sub", default=None, help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                _accept_config_after(p)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace, Any], int] = args.func
    try:
        path = find_config_path(getattr(args, "config_sub", None) or args.config)
        if getattr(args, "config_may_be_missing", False) and path is not None and not path.exists():
            path = None  # quickstart writes it
        config = load_config(path)
        return func(args, config)
    except (ConfigError, UsageError) as exc:
        print(f"merpati: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"merpati: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
