"""STARTTLS, LOGIN and AUTHENTICATE (PLAIN, LOGIN; rfc4959 SASL-IR) through the shared
``merpati.auth.sasl`` layer and the injected credential check.

Before TLS, unless ``allow_plaintext_auth``, LOGIN and AUTHENTICATE are refused
(rfc9051:6.2.3 LOGINDISABLED, rfc5530 PRIVACYREQUIRED). Credentials are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from merpati.auth import sasl
from merpati.imap import commands as c
from merpati.imap.responses import Refused, Result, bad, no, ok, status_line

if TYPE_CHECKING:
    from merpati.imap.session import Session

MAX_AUTH_FAILURES = 5  # per connection; then BYE (the shared throttle slows each attempt too)


async def starttls(s: Session, cmd: c.Command) -> Result:
    if s.tls_active:
        raise bad("TLS is already active")
    if not s.config.starttls_available:
        raise no("STARTTLS is not available here")
    s.want_starttls = True  # the transport upgrades after this reply is flushed
    return ok("Begin TLS negotiation now")


def _privacy(s: Session) -> None:
    if not s.login_allowed:
        raise no("Use STARTTLS first", b"PRIVACYREQUIRED")


async def _check(s: Session, user: str, password: str) -> Result:
    account = await s.verify(user, password)
    if account is None:
        s.auth_failures += 1
        s.log("imap.auth", result="failed")
        if s.auth_failures >= MAX_AUTH_FAILURES:
            from merpati.imap.session import State

            s.write(b"* BYE Too many authentication failures\r\n")
            s.state = State.LOGOUT
        return Result("NO", b"AUTHENTICATIONFAILED", "Authentication failed")
    s._login_done(account)
    s.log("imap.auth", result="ok", account=account)
    caps = " ".join(s.capabilities()).encode()
    return ok("Logged in", b"CAPABILITY " + caps)


async def login(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Login)
    _privacy(s)
    try:
        user = cmd.user.decode("utf-8")
        password = cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        return Result("NO", b"AUTHENTICATIONFAILED", "Authentication failed")
    return await _check(s, user, password)


async def authenticate(s: Session, cmd: c.Command) -> Result | None:
    assert isinstance(cmd, c.Authenticate)
    _privacy(s)
    try:
        exchange = sasl.start(cmd.mechanism, cmd.initial)
    except sasl.UnknownMechanism:
        raise no("Unsupported authentication mechanism", b"CANNOT") from None
    return await _step(s, cmd.tag, exchange, None)


async def _step(
    s: Session, tag: bytes, exchange: sasl.SaslExchange, data: bytes | None
) -> Result | None:
    try:
        step = exchange.step(data)
    except sasl.SaslCancelled:
        s._sasl = None
        raise bad("Authentication cancelled") from None
    except sasl.SaslError:
        s._sasl = None
        raise bad("Malformed authentication data") from None
    if isinstance(step, sasl.Challenge):
        s._sasl = (tag, exchange)
        s.write(b"+ " + step.b64 + b"\r\n")
        return None
    s._sasl = None
    if step.authzid and step.authzid != step.authcid:
        return Result("NO", b"AUTHORIZATIONFAILED", "Cannot act as another user")
    return await _check(s, step.authcid, step.password)


async def sasl_continue(s: Session, data: bytes) -> None:
    """A client response line during AUTHENTICATE (rfc9051:6.2.2)."""
    assert s._sasl is not None
    tag, exchange = s._sasl
    try:
        result = await _step(s, tag, exchange, data)
    except Refused as exc:
        result = exc.result
    if result is None:
        return
    if result.status == "BAD":
        s.write(status_line(tag, "BAD", None, result.text))
        return
    await s.finish(tag, result)
