"""argon2id password hashing (RFC 9106) with argon2-cffi.

Parameters follow the OWASP recommendation for argon2id (m=19 MiB, t=2, p=1): about 20 ms
per check on one core, which bounds what a brute-force attempt costs us; the authenticator's
success cache keeps reconnecting clients from paying it every time.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
# A hash of a random password, checked when the account does not exist so that the answer
# takes as long as for a real account (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("empty password")
    return _HASHER.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    """Constant-time check; with ``password_hash=None`` it spends the same time and fails."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A password to print once: 20 characters from an unambiguous alphabet (~116 bits)."""
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(20))
