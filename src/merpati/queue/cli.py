"""``merpati queue list [--json] | flush | retry ID | remove ID | bounce ID``.

These commands open the queue database directly, so they work whether or not a server runs: a
running server looks at the database every second and picks up what changed (``flush`` and
``retry`` make messages due now; ``bounce`` marks a message so that the runner bounces it with
a DSN; ``remove`` deletes it without a DSN).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from merpati.config import Config
from merpati.errors import OperationalError
from merpati.queue.store import QueuedMessage, QueueStore

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("queue", help="the outbound queue")
    sub = p.add_subparsers(dest="queue_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="list queued messages")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)
    sub.add_parser("flush", help="retry every queued message now").set_defaults(func=_flush)
    for name, func, text in (
        ("retry", _retry, "retry one message now"),
        ("remove", _remove, "delete one message without a bounce"),
        ("bounce", _bounce, "return one message to its sender with a DSN"),
    ):
        q = sub.add_parser(name, help=text)
        q.add_argument("id", metavar="ID")
        q.set_defaults(func=func)


def _open(config: Config) -> QueueStore | None:
    if not (config.data_dir / "queue" / "queue.db").exists():
        return None
    try:
        return QueueStore.open(config.data_dir)
    except OSError as exc:
        raise OperationalError(
            f"cannot open the queue in {config.data_dir}: {exc.strerror}"
        ) from None
    except Exception as exc:
        raise OperationalError(f"cannot open the queue in {config.data_dir}: {exc}") from None


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _last_reply(msg: QueuedMessage) -> str:
    replies = [r.last_reply for r in msg.pending if r.last_reply]
    return replies[0] if replies else ""


def _as_json(msg: QueuedMessage, now: float) -> dict[str, Any]:
    return {
        "id": msg.id,
        "sender": msg.envelope.mail_from,
        "recipients": [
            {
                "address": r.address,
                "state": "deferred" if r.state == "pending" and r.attempts else r.state,
                "attempts": r.attempts,
                "last_code": r.last_code,
                "last_reply": r.last_reply,
                "remote_mta": r.remote_mta,
            }
            for r in msg.recipients
        ],
        "size": msg.size,
        "created": _iso(msg.created),
        "age": round(now - msg.created, 1),
        "attempts": msg.attempts,
        "next_attempt": _iso(msg.next_attempt),
        "last_reply": _last_reply(msg),
        "active": msg.lease_owner is not None,
        "bounce_requested": msg.bounce_requested,
    }


def _list(args: argparse.Namespace, config: Config) -> int:
    store = _open(config)
    msgs = store.list_messages() if store else []
    now = time.time()
    if args.json:
        print(json.dumps([_as_json(m, now) for m in msgs], indent=2))
        return 0
    if not msgs:
        print("queue is empty")
        return 0
    for m in msgs:
        wait = m.next_attempt - now
        nxt = "now" if wait <= 0 else f"in {_age(wait)}"
        state = " (being delivered)" if m.lease_owner else ""
        sender = m.envelope.mail_from or "<>"
        print(
            f"{m.id}  {m.size:>9}  age {_age(now - m.created):>6}  attempts {m.attempts}"
            f"  next {nxt}{state}  from {sender}"
        )
        for r in m.recipients:
            st = "deferred" if r.state == "pending" and r.attempts else r.state
            reply = f": {r.last_reply}" if r.last_reply and r.state == "pending" else ""
            print(f"    {r.address}  {st}{reply}")
    print(f"{len(msgs)} message{'s' if len(msgs) != 1 else ''}")
    return 0


def _flush(args: argparse.Namespace, config: Config) -> int:
    store = _open(config)
    n = store.flush(time.time()) if store else 0
    print(f"{n} message{'s' if n != 1 else ''} will be retried now")
    return 0


def _one(args: argparse.Namespace, config: Config, action: str) -> int:
    store = _open(config)
    qid = str(args.id)
    now = time.time()
    if store is None:
        done = False
    elif action == "retry":
        done = store.retry(qid, now)
    elif action == "remove":
        done = store.remove(qid)
    else:
        done = store.request_bounce(qid, now)
    if not done:
        raise OperationalError(f"no message {qid} in the queue in {config.data_dir}")
    text = {
        "retry": "will be retried now",
        "remove": "removed",
        "bounce": "will be returned to its sender",
    }[action]
    print(f"{qid} {text}")
    return 0


def _retry(args: argparse.Namespace, config: Config) -> int:
    return _one(args, config, "retry")


def _remove(args: argparse.Namespace, config: Config) -> int:
    return _one(args, config, "remove")


def _bounce(args: argparse.Namespace, config: Config) -> int:
    return _one(args, config, "bounce")
