"""Sliding-window rate limits: new connections per client IP (``[policy]
connection_rate_per_ip`` per minute) and outbound messages per authenticated account
(``[policy] outbound_rate_per_account`` per hour; protects the domain's reputation when a
password leaks). A limit of 0 turns the limiter off. Clients in ``[policy] trusted_networks``
(loopback by default: local scripts, webmail, benchmarks) are not limited.

Counters live in the memory of one ``merpati serve`` process (two servers on one data dir
each count on their own; the processes of one server with ``workers`` share theirs through
``merpati.trust.shared_rate``); memory is bounded by ``max_keys``. ``controls_for(app)`` gives the
one ``AbuseControls`` of a running server, shared by every listener.

Call points (the SMTP transport):
- on accept, any SMTP listener: ``if not controls.connections.allow(peer_ip, now)``: reply
  ``CONNECTION_RATE_REPLY`` and close;
- at MAIL FROM in an authenticated session from an untrusted client: ``if not
  controls.outbound.allow(auth_user, now)``: reply ``OUTBOUND_RATE_REPLY`` (each accepted
  transaction counts as one message).
"""

from __future__ import annotations

import functools
import ipaddress
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from merpati.address import client_ip
from merpati.config import Config

if TYPE_CHECKING:
    from merpati.app import App
    from merpati.trust.greylist import Greylist

__all__ = [
    "CONNECTION_RATE_REPLY",
    "OUTBOUND_RATE_REPLY",
    "AbuseControls",
    "RateLimiter",
    "controls_for",
]

CONNECTION_RATE_REPLY = b"421 4.7.0 Too many connections from your address, try again later\r\n"
OUTBOUND_RATE_REPLY = b"450 4.7.1 Sending limit reached for this account, try again later\r\n"
MAX_KEYS = 100_000


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def _prune(self, now: float) -> None:
        stale = [k for k, q in self._events.items() if not q or now - q[-1] >= self.window]
        for k in stale:
            del self._events[k]
        while len(self._events) >= self.max_keys:
            del self._events[next(iter(self._events))]  # the longest-known key

    def allow(self, key: str, now: float | None = None) -> bool:
        """Record one event for ``key`` and say whether it is within the limit (a refused
        event is not recorded, so a client that waits gets through)."""
        if self.limit <= 0:
            return True
        when = time.monotonic() if now is None else now
        q = self._events.get(key)
        if q is None:
            if len(self._events) >= self.max_keys:
                self._prune(when)
            q = self._events[key] = deque()
        while q and when - q[0] >= self.window:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(when)
        return True

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may send again (0 when it may now)."""
        when = time.monotonic() if now is None else now
        q = self._events.get(key)
        if self.limit <= 0 or not q or len(q) < self.limit:
            return 0.0
        return max(0.0, self.window - (when - q[0]))


@dataclass(eq=False)
class AbuseControls:
    connections: RateLimiter
    outbound: RateLimiter
    greylist: Greylist | None
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def is_trusted(self, ip: str | None) -> bool:
        """``[policy] trusted_networks``: local clients exempt from checks and limits."""
        if not ip:
            return False
        if not self.trusted:
            return False
        return _in_networks(ip, self.trusted)

    @classmethod
    def from_config(cls, config: Config) -> AbuseControls:
        grey: Greylist | None = None
        if config.policy.greylisting:
            from merpati.trust.greylist import Greylist

            grey = Greylist(
                Path(config.data_dir) / "greylist.sqlite3", config.policy.greylist_delay
            )
        return cls(
            connections=RateLimiter(config.policy.connection_rate_per_ip, 60.0),
            outbound=RateLimiter(config.policy.outbound_rate_per_account, 3600.0),
            greylist=grey,
            trusted=tuple(
                ipaddress.ip_network(n, strict=False) for n in config.policy.trusted_networks
            ),
        )


_per_app: weakref.WeakKeyDictionary[App, AbuseControls] = weakref.WeakKeyDictionary()


def controls_for(app: App) -> AbuseControls:
    found = _per_app.get(app)
    if found is None:
        found = _per_app[app] = AbuseControls.from_config(app.config)
    return found


@functools.lru_cache(maxsize=4096)
def _in_networks(
    ip: str, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Is ``ip`` in one of ``trusted``? (Remembered: asked for every message of a client.)"""
    addr = client_ip(ip)
    if addr is None:
        return False
    return any(addr in net for net in trusted if net.version == addr.version)
