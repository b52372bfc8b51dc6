"""The one credential check every protocol uses: ``await auth.verify(user, password, ip)``.

- argon2 runs in a worker thread, so a login never blocks the event loop.
- Unknown accounts cost the same as known ones (a dummy hash is checked).
- Failures are throttled per IP and per account (``Throttle``), the delay served here.
- Successes are remembered for ``cache_ttl`` seconds, keyed by an HMAC of account and password
  under a per-process random key (never the password itself) and tied to the account's current
  hash, so ``user passwd`` and ``user remove`` (another process) invalidate it at once: the next
  check reads the hash from the database and the cached entry no longer matches. This is what
  Dovecot's auth cache does for clients that reconnect often.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from merpati.accounts.store import AccountStore
from merpati.address import AddressError, parse_address
from merpati.auth.passwords import check_password
from merpati.auth.throttle import Throttle


class Authenticator:
    def __init__(
        self,
        accounts: AccountStore,
        *,
        free_failures: int = 5,
        cache_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.accounts = accounts
        self.throttle = Throttle(free=free_failures, clock=clock)
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[str, str, float]] = {}
        self.checks = 0  # argon2 verifications done (for tests and metrics)
        # Identical checks under way: many connections logging in with the same credentials
        # at once (a client reconnecting all its folders) share one argon2 run.
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}

    def _cache_key(self, account: str, password: str) -> bytes:
        msg = account.encode() + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    async def verify(self, username: str, password: str, remote_ip: str) -> str | None:
        """The canonical account address if the credentials are right, else None."""
        try:
            account = parse_address(username.strip()).canonical
        except AddressError:
            account = username.strip().casefold()[:320]
        delay = self.throttle.delay(remote_ip, account)
        if delay:
            await asyncio.sleep(delay)
        pw_hash = self.accounts.password_hash(account)
        key = self._cache_key(account, password)
        hit = self._cache.get(key)
        now = self._clock()
        if hit and pw_hash is not None and hit[1] == pw_hash and hit[2] > now:
            self.throttle.success(remote_ip, account)
            return hit[0]
        ok = await self._check_once(key, pw_hash, password)
        if not ok or pw_hash is None:
            self.throttle.failure(remote_ip, account)
            return None
        self.throttle.success(remote_ip, account)
        if len(self._cache) > 50_000:
            self._cache = {k: v for k, v in self._cache.items() if v[2] > now}
        self._cache[key] = (account, pw_hash, now + self.cache_ttl)
        return account

    async def _check_once(self, key: bytes, pw_hash: str | None, password: str) -> bool:
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.checks += 1
            ok = await asyncio.to_thread(check_password, pw_hash, password)
            future.set_result(ok)
            return ok
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._inflight[key]
