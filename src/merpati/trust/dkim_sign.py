"""DKIM signing (rfc6376) of outgoing mail with the domain's current key set (dkim_keys):
one RSA-SHA256 and one Ed25519-SHA256 (rfc8463) signature, relaxed/relaxed canonicalization,
the rfc6376:5.4.1 recommended header fields that are present, From: signed one extra time so
that no second From: can be added (rfc6376:8.15).

The queue calls ``sign`` for a message whose sender domain is local before its first delivery
attempt. A domain without keys gets the message back unchanged. Signing is CPU work (a few
milliseconds); callers on the event loop may run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dkim

from merpati.trust.dkim_keys import (
    DEFAULT_ROTATION_DELAY,
    KeyInfo,
    dkimpy_private_key,
    signing_keys,
)
from merpati.trust.headers import iter_fields, split_message

__all__ = ["SIGNED_HEADERS", "key_bytes", "sign"]

# rfc6376:5.4.1 "SHOULD be included"; only those present are signed, From twice.
SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "resent-date",
    "resent-from",
    "resent-to",
    "resent-cc",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    "message-id",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
)
_OVERSIGNED = ("from",)
_ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}

_cache_lock = threading.Lock()
_key_cache: dict[tuple[Path, float], bytes] = {}


def key_bytes(info: KeyInfo) -> bytes:
    stamp = info.path.stat().st_mtime
    with _cache_lock:
        cached = _key_cache.get((info.path, stamp))
    if cached is not None:
        return cached
    key = dkimpy_private_key(info)
    with _cache_lock:
        if len(_key_cache) > 256:
            _key_cache.clear()
        _key_cache[(info.path, stamp)] = key
    return key


def _include_headers(message: bytes) -> list[bytes]:
    header, _ = split_message(message)
    present = {f.name for f in iter_fields(header)}
    names = [h for h in SIGNED_HEADERS if h in present]
    if "from" not in names:
        names.insert(0, "from")  # rfc6376:5.4 From is required; signing it absent is harmless
    names += [h for h in _OVERSIGNED if h in names]
    return [n.encode("ascii") for n in names]


def sign(
    message: bytes,
    domain: str,
    data_dir: Path,
    *,
    now: float | None = None,
    rotation_delay: float = DEFAULT_ROTATION_DELAY,
) -> bytes:
    """Return ``message`` with a DKIM-Signature field per key of ``domain`` prepended."""
    keys = signing_keys(data_dir, domain, now=now, rotation_delay=rotation_delay)
    if not keys:
        return message
    include = _include_headers(message)
    fields: list[bytes] = []
    for info in keys:
        signer = dkim.DKIM(message, signature_algorithm=_ALGORITHMS[info.algorithm])
        signer.should_not_sign = set()  # we choose the list ourselves
        field = signer.sign(
            info.selector.encode("ascii"),
            info.domain.encode("ascii"),
            key_bytes(info),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        fields.append(field)
    return b"".join(fields) + message
