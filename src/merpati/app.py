"""The running server's shared services, built once by ``merpati serve`` and handed to every
listener factory and service. Protocol code takes what it needs from here and nothing global.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from merpati.config import Config

if TYPE_CHECKING:
    from merpati.accounts.store import AccountStore
    from merpati.auth.credentials import Authenticator
    from merpati.delivery.api import Deliverer, Intake, OutboundQueue
    from merpati.logging import EventLog
    from merpati.mailstore.api import MailStore
    from merpati.metrics import Metrics
    from merpati.tls import TLSManager


@dataclass(eq=False)
class App:
    config: Config
    accounts: AccountStore
    auth: Authenticator
    mailstore: MailStore
    tls: TLSManager
    metrics: Metrics
    log: EventLog
    # Set by the delivery and queue packages at start-up.
    queue: OutboundQueue | None = None
    deliver: Deliverer | None = None
    intake: Intake | None = None  # the intake journal, when serving (merpati.delivery.intake)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the listeners are bound and privileges dropped (processes of our own, such as
    # the delivery agent, start after it).
    serving: asyncio.Event = field(default_factory=asyncio.Event)
