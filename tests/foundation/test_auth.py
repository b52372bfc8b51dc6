"""The shared credential check (throttle, cache) and the SASL mechanisms."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from merpati.accounts.store import AccountStore
from merpati.auth import sasl
from merpati.auth.credentials import Authenticator
from merpati.auth.throttle import Throttle


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_plain_with_initial_response() -> None:
    ex = sasl.start("plain", b64(b"\0alice@example.org\0s3cret"))
    cred = ex.step(None)
    assert cred == sasl.Credentials("", "alice@example.org", "s3cret")


def test_plain_without_initial_response() -> None:
    ex = sasl.start("PLAIN", None)
    ch = ex.step(None)
    assert isinstance(ch, sasl.Challenge) and ch.b64 == b""
    assert ex.step(b64(b"admin\0alice\0pw")) == sasl.Credentials("admin", "alice", "pw")


def test_login_mechanism() -> None:
    ex = sasl.start("LOGIN", None)
    assert ex.step(None) == sasl.Challenge(b64(b"Username:"))
    assert ex.step(b64(b"alice")) == sasl.Challenge(b64(b"Password:"))
    assert ex.step(b64(b"pw")) == sasl.Credentials("", "alice", "pw")


def test_login_with_initial_username() -> None:
    ex = sasl.start("LOGIN", b64(b"alice"))
    assert ex.step(None) == sasl.Challenge(b64(b"Password:"))
    assert ex.step(b64(b"pw")) == sasl.Credentials("", "alice", "pw")


@pytest.mark.parametrize(
    ("mech", "data", "error"),
    [
        ("PLAIN", b"*", sasl.SaslCancelled),
        ("PLAIN", b"not base64!!", sasl.SaslMalformed),
        ("PLAIN", b64(b"only-one-part"), sasl.SaslMalformed),
        ("PLAIN", b64(b"\0\0pw"), sasl.SaslMalformed),
        ("PLAIN", b64(b"\0" + b"u" * 300 + b"\0pw"), sasl.SaslMalformed),
        ("PLAIN", b64(b"\0\xff\xfe\0pw"), sasl.SaslMalformed),
    ],
)
def test_sasl_errors(mech: str, data: bytes, error: type[Exception]) -> None:
    ex = sasl.start(mech, None)
    ex.step(None)
    with pytest.raises(error):
        ex.step(data)


def test_unknown_mechanism() -> None:
    with pytest.raises(sasl.UnknownMechanism):
        sasl.start("CRAM-MD5", None)


def test_throttle_grows_and_is_per_ip_and_account() -> None:
    now = [0.0]
    t = Throttle(free=3, window=100, max_delay=30, clock=lambda: now[0])
    for _ in range(3):
        assert t.delay("1.1.1.1", "a") == 0
        t.failure("1.1.1.1", "a")
    assert t.delay("1.1.1.1", "a") == 1
    t.failure("1.1.1.1", "a")
    assert t.delay("1.1.1.1", "zzz") == 2  # the IP is throttled whatever the account
    assert t.delay("9.9.9.9", "a") == 2  # the account is throttled whatever the IP
    assert t.delay("9.9.9.9", "b") == 0
    for _ in range(20):
        t.failure("1.1.1.1", "a")
    assert t.delay("1.1.1.1", "a") == 30
    now[0] = 1000.0  # the window passes
    assert t.delay("1.1.1.1", "a") == 0


def test_verify_cache_and_invalidation(tmp_path: Path) -> None:
    accounts = AccountStore.open(tmp_path)
    accounts.add_domain("example.org")
    accounts.add_account("alice@example.org", "right")
    auth = Authenticator(accounts)

    async def go() -> None:
        assert await auth.verify("Alice@example.org", "right", "127.0.0.1") == "alice@example.org"
        assert auth.checks == 1
        assert await auth.verify("alice@example.org", "right", "127.0.0.1") == "alice@example.org"
        assert auth.checks == 1  # served from the cache: no argon2
        assert await auth.verify("alice@example.org", "wrong", "127.0.0.1") is None
        assert await auth.verify("nobody@example.org", "right", "127.0.0.1") is None
        # Another process changes the password: the cached success no longer applies.
        other = AccountStore.open(tmp_path)
        other.set_password("alice@example.org", "new")
        assert await auth.verify("alice@example.org", "right", "127.0.0.1") is None
        assert await auth.verify("alice@example.org", "new", "127.0.0.1") == "alice@example.org"
        other.remove_account("alice@example.org")
        assert await auth.verify("alice@example.org", "new", "127.0.0.1") is None

    asyncio.run(go())


def test_concurrent_identical_checks_share_one_argon2_run(tmp_path: Path) -> None:
    accounts = AccountStore.open(tmp_path)
    accounts.add_domain("example.org")
    accounts.add_account("alice@example.org", "right")
    auth = Authenticator(accounts)

    async def go() -> None:
        results = await asyncio.gather(
            *(auth.verify("alice@example.org", "right", "127.0.0.1") for _ in range(20))
        )
        assert results == ["alice@example.org"] * 20
        assert auth.checks == 1
        wrong = await asyncio.gather(
            *(auth.verify("alice@example.org", "wrong", "127.0.0.2") for _ in range(3))
        )
        assert wrong == [None] * 3
        assert auth.checks == 2

    asyncio.run(go())
