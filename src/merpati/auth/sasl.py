"""SASL server mechanisms shared by SMTP (rfc4954), IMAP (rfc3501:6.2.2) and POP3 (rfc5034).

Sans-I/O: the protocol sends the challenges and reads the responses; this module only decodes
base64 (all three protocols carry SASL data in base64) and the mechanism messages. The result
is a ``Credentials`` the protocol hands to ``Authenticator.verify``.

Mechanisms: PLAIN (rfc4616) and LOGIN (draft-murchison-sasl-login). SCRAM needs a stored key
derived with PBKDF2 next to the argon2id hash; it is not offered.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN")
# rfc4616:2 each of authzid, authcid and passwd is at most 255 octets of UTF-8.
MAX_FIELD = 255


class SaslError(Exception):
    pass


class UnknownMechanism(SaslError):
    pass


class SaslCancelled(SaslError):
    pass


class SaslMalformed(SaslError):
    pass


@dataclass(frozen=True, slots=True)
class Challenge:
    b64: bytes  # base64 of the challenge, to send after "334 " / "+ "


@dataclass(frozen=True, slots=True)
class Credentials:
    authzid: str
    authcid: str
    password: str


def decode_b64(data: bytes) -> bytes:
    data = data.strip()
    if data == b"*":
        raise SaslCancelled("authentication cancelled")
    if data == b"=":  # rfc4954:4 an empty initial response
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslMalformed("invalid base64") from None


def _text(raw: bytes) -> str:
    if len(raw) > MAX_FIELD:
        raise SaslMalformed("field too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslMalformed("not UTF-8") from None


class SaslExchange:
    """One authentication exchange. Call ``step(None)`` first with no initial response."""

    def __init__(self, mechanism: str, initial: bytes | None) -> None:
        self.mechanism = mechanism.upper()
        if self.mechanism not in MECHANISMS:
            raise UnknownMechanism(mechanism)
        self._initial = initial
        self._username: str | None = None
        self._started = False

    def step(self, b64: bytes | None) -> Challenge | Credentials:
        if not self._started:
            self._started = True
            if self._initial is not None:
                b64 = self._initial
        if self.mechanism == "PLAIN":
            if b64 is None:
                return Challenge(b"")
            return self._plain(decode_b64(b64))
        return self._login(b64)

    def _plain(self, raw: bytes) -> Credentials:
        parts = raw.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SaslMalformed("PLAIN needs authzid NUL authcid NUL password")
        return Credentials(_text(parts[0]), _text(parts[1]), _text(parts[2]))

    def _login(self, b64: bytes | None) -> Challenge | Credentials:
        if self._username is None:
            if b64 is None:
                return Challenge(base64.b64encode(b"Username:"))
            self._username = _text(decode_b64(b64))
            return Challenge(base64.b64encode(b"Password:"))
        if b64 is None:
            raise SaslMalformed("missing response")
        return Credentials("", self._username, _text(decode_b64(b64)))


def start(mechanism: str, initial: bytes | None) -> SaslExchange:
    return SaslExchange(mechanism, initial)
