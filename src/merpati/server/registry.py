"""The listener and service registry: where protocols plug into ``merpati serve``.

A protocol package provides, for each listener name of INTERFACE.md, a factory
``def make(app: App) -> ListenerSpec``; it is named here by import path. Start-up binds every
configured address of every listener, enforces the connection limits (total and per IP, with
the protocol's own "busy" reply), does implicit TLS, and hands each accepted ``Connection`` to
the spec's handler. Background services (the queue runner) are ``async def start(app) ->
Service`` factories.

The tables name factories by import path, not by object, so that this module (which the
protocol packages import for ``ListenerSpec``) imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from merpati.server.connection import Connection

if TYPE_CHECKING:
    pass

TLSMode = Literal["none", "starttls", "implicit"]
Handler = Callable[[Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    handler: Handler
    tls: TLSMode
    busy_reply: bytes  # written before closing a connection refused by a limit


class Service(Protocol):
    async def stop(self) -> None: ...


# listener name -> "module:factory"
LISTENER_FACTORIES: dict[str, str] = {
    "smtp": "merpati.smtp.server:mx_listener",
    "submission": "merpati.smtp.server:submission_listener",
    "submissions": "merpati.smtp.server:submissions_listener",
    "imap": "merpati.imap.server:imap_listener",
    "imaps": "merpati.imap.server:imaps_listener",
    "pop3": "merpati.pop3.server:pop3_listener",
    "pop3s": "merpati.pop3.server:pop3s_listener",
    "http": "merpati.server.http:http_listener",
}

# "module:factory" of background services, started in order before the listeners accept.
SERVICE_FACTORIES: tuple[str, ...] = (
    "merpati.trust.hooks:start_trust",  # installs the DKIM signer before the queue runs
    "merpati.queue.service:start_queue_service",
    "merpati.delivery.intake:start_intake",  # needs the queue; stopped before it
)


def resolve(path: str) -> Callable[..., object]:
    """Import "module:attr"."""
    module_name, attr = path.split(":")
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"{path} is not callable")
    return fn  # type: ignore[no-any-return]
