"""Sender Rewriting Scheme for alias forwarding: a message that an alias of ours forwards to a
remote address leaves with an envelope sender in our domain, so SPF passes at the next hop,
and bounces to that address are routed back to the original sender.

Forms (the scheme of libsrs2/postsrsd, so addresses look familiar to operators):

- ``SRS0=HHHH=TT=orig.domain=orig-local@our.domain`` for an ordinary sender; TT is the day
  (days since 1970 mod 1024, two base32 characters), HHHH the first four base64 characters
  of HMAC-SHA1(secret, TT + orig.domain + orig-local) over the lowercased text.
- ``SRS1=HHHH=first.hop==HHHH=TT=orig.domain=orig-local@our.domain`` when the sender is
  already an SRS0 address of another forwarder: only that forwarder can reverse its part, so
  we keep it opaque and sign the pair (first hop, opaque part).

``reverse`` checks the hash (case-insensitively, since some MTAs change case) and the age
(``MAX_AGE_DAYS``); a forged or expired address raises ``SrsError`` and must be refused
(550) rather than forwarded. The secret is ``[policy] srs_secret`` or, if empty, 32 random
bytes generated once into ``DATA_DIR/srs_secret`` (mode 0600).

This module does not decide which messages are rewritten; see ``rewrite_needed``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path

from merpati.config import Config

__all__ = [
    "MAX_AGE_DAYS",
    "Srs",
    "SrsError",
    "is_srs",
    "load_secret",
    "rewrite_needed",
]

MAX_AGE_DAYS = 21  # bounces come back within days; libsrs2 uses 21 too
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PERIOD = 1024  # days; TT has 10 bits
_SRS0 = re.compile(r"SRS0[=+\-]([^=]+)=([^=]{2})=([^=]+)=(.+)", re.IGNORECASE)
_SRS1 = re.compile(r"SRS1[=+\-]([^=]+)=([^=]+)==(.+)", re.IGNORECASE)


class SrsError(ValueError):
    """An SRS address that is malformed, forged or too old."""


def is_srs(local_part: str) -> bool:
    return local_part[:5].upper() in ("SRS0=", "SRS0+", "SRS0-", "SRS1=", "SRS1+", "SRS1-")


def rewrite_needed(mail_from: str, sender_is_local: bool) -> bool:
    """A forwarded message needs SRS unless the sender is null (a bounce) or our own."""
    return bool(mail_from) and not sender_is_local


def load_secret(config: Config) -> bytes:
    """``[policy] srs_secret``, else the secret in the data directory (made on first use)."""
    if config.policy.srs_secret:
        return config.policy.srs_secret.encode("utf-8")
    path = config.data_dir / "srs_secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".srs_secret.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # first writer wins when two processes race
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return Path(path).read_bytes().strip()


class Srs:
    def __init__(self, secret: bytes, max_age_days: int = MAX_AGE_DAYS) -> None:
        if not secret:
            raise ValueError("SRS needs a non-empty secret")
        self._secret = secret
        self._max_age = max_age_days

    def _hash(self, *parts: str) -> str:
        data = "".join(parts).lower().encode("utf-8")
        digest = hmac.new(self._secret, data, hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")[:4]

    def _check_hash(self, given: str, *parts: str) -> None:
        if not hmac.compare_digest(given.lower(), self._hash(*parts).lower()):
            raise SrsError("SRS address hash does not match")

    @staticmethod
    def _stamp(now: float) -> str:
        day = int(now // 86400) % _PERIOD
        return _B32[day >> 5] + _B32[day & 31]

    def _check_stamp(self, stamp: str, now: float) -> None:
        try:
            value = (_B32.index(stamp[0].upper()) << 5) | _B32.index(stamp[1].upper())
        except ValueError:
            raise SrsError("SRS timestamp unreadable") from None
        today = int(now // 86400) % _PERIOD
        if (today - value) % _PERIOD > self._max_age:
            raise SrsError("SRS address has expired")

    def forward(self, sender: str, our_domain: str, now: float | None = None) -> str:
        """The envelope sender to use when ``our_domain`` forwards mail from ``sender``."""
        when = time.time() if now is None else now
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain:
            raise SrsError(f"cannot rewrite sender {sender!r}")
        m1 = _SRS1.fullmatch(local)
        if m1:
            # Already SRS1 from another hop: keep the first hop and its opaque part.
            first_hop, opaque = m1.group(2), m1.group(3)
            return f"SRS1={self._hash(first_hop, opaque)}={first_hop}=={opaque}@{our_domain}"
        if _SRS0.fullmatch(local):
            opaque = local[5:]
            return f"SRS1={self._hash(domain, opaque)}={domain}=={opaque}@{our_domain}"
        stamp = self._stamp(when)
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{our_domain}"

    def reverse(self, address: str, now: float | None = None) -> str:
        """Where a bounce to our SRS ``address`` goes; raises ``SrsError`` if it is not ours,
        forged, or expired."""
        when = time.time() if now is None else now
        local = address.rpartition("@")[0] if "@" in address else address
        m1 = _SRS1.fullmatch(local)
        if m1:
            given, first_hop, opaque = m1.groups()
            self._check_hash(given, first_hop, opaque)
            return f"SRS0={opaque}@{first_hop}"
        m0 = _SRS0.fullmatch(local)
        if m0:
            given, stamp, domain, orig_local = m0.groups()
            self._check_hash(given, stamp, domain, orig_local)
            self._check_stamp(stamp, when)
            return f"{orig_local}@{domain}"
        raise SrsError("not an SRS address")
