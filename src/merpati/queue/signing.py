"""The hook through which outgoing mail is signed (DKIM, issue 8) just before it is sent.

The trust package calls ``set_signer(fn)`` at start-up; ``fn(message, sender_domain)`` returns
the message with its signature header(s) prepended. ``sender_domain`` is the domain of the
envelope sender ("" for the null sender of DSNs). A signer that raises leaves the message
unsigned (it is logged by the runner); signing never stops delivery.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Signer", "get_signer", "set_signer"]

Signer = Callable[[bytes, str], bytes]

_signer: Signer | None = None


def set_signer(fn: Signer | None) -> None:
    global _signer
    _signer = fn


def get_signer() -> Signer | None:
    return _signer
