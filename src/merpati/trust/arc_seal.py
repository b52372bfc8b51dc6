"""ARC sealing (rfc8617:5.1) of a message we forward: after our inbound checks have added
their Authentication-Results, the forwarding domain adds an ARC set (ARC-Authentication-
Results, ARC-Message-Signature, ARC-Seal) signed with its current RSA DKIM key, so the next
hop can see what we saw before forwarding changed the envelope (and perhaps the message).

dkimpy seals with RSA-SHA256 only. A message without an Authentication-Results field of our
authserv-id (e.g. one submitted by a local user) is returned unchanged: there is nothing to
attest. This module does not decide which messages are forwarded.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from merpati.trust.dkim_keys import DEFAULT_ROTATION_DELAY, signing_keys
from merpati.trust.dkim_sign import key_bytes
from merpati.trust.inbound import authentication_results_fields, authserv_id_of

__all__ = ["seal"]


def seal(
    message: bytes,
    domain: str,
    data_dir: Path,
    authserv_id: str,
    *,
    now: float | None = None,
    rotation_delay: float = DEFAULT_ROTATION_DELAY,
) -> bytes:
    """``message`` with a new ARC set from ``domain`` on top (or unchanged, see above)."""
    ours = authserv_id.lower().rstrip(".")
    if not any(authserv_id_of(v) == ours for v in authentication_results_fields(message)):
        return message
    keys = signing_keys(data_dir, domain, now=now, rotation_delay=rotation_delay)
    rsa = [k for k in keys if k.algorithm == "rsa"]
    if not rsa:
        return message
    try:
        fields = dkim.arc_sign(
            message,
            rsa[0].selector.encode("ascii"),
            rsa[0].domain.encode("ascii"),
            key_bytes(rsa[0]),
            ours.encode("ascii"),
            timestamp=None if now is None else int(now),
        )
    except Exception:  # dkimpy on a hostile message: still forwarded, only without ARC
        return message
    return b"".join(fields) + message
