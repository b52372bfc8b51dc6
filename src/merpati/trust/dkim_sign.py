"""DKIM signing (rfc6376) of outgoing mail with the domain's current key set (dkim_keys):
one RSA-SHA256 and one Ed25519-SHA256 (rfc8463) signature, relaxed/relaxed canonicalization,
the rfc6376:5.4.1 recommended header fields that are present, From: signed one extra time so
that no second From: can be added (rfc6376:8.15).

The signature is computed here with ``cryptography`` (OpenSSL) rather than dkimpy's signer:
dkimpy does the RSA private-key operation in pure Python (about 35 ms per message, which
would cap outbound mail near 30 messages/s); OpenSSL takes about 1 ms. The tests check every
signature with dkimpy's verifier. ARC sealing (arc_seal) still uses dkimpy.

The queue calls ``sign`` for a message whose sender domain is local before its first delivery
attempt. A domain without keys gets the message back unchanged. Signing is CPU work; callers
on the event loop run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from merpati.trust.dkim_keys import (
    DEFAULT_ROTATION_DELAY,
    DkimKeyError,
    KeyInfo,
    dkimpy_private_key,
    signing_keys,
)
from merpati.trust.headers import iter_fields, split_message

__all__ = [
    "SIGNED_HEADERS",
    "canonical_body",
    "canonical_header",
    "key_bytes",
    "sign",
]

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
_ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")

_cache_lock = threading.Lock()
_key_cache: dict[tuple[Path, float], bytes] = {}
_private_cache: dict[tuple[Path, float], rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey] = {}


def key_bytes(info: KeyInfo) -> bytes:
    """The key in dkimpy's form (for ARC sealing), cached by file and mtime."""
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


def _private_key(info: KeyInfo) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    stamp = info.path.stat().st_mtime
    with _cache_lock:
        cached = _private_cache.get((info.path, stamp))
    if cached is not None:
        return cached
    try:
        key = serialization.load_pem_private_key(info.path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise DkimKeyError(f"{info.path}: cannot load the DKIM key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"{info.path}: not an RSA or Ed25519 key")
    with _cache_lock:
        if len(_private_cache) > 256:
            _private_cache.clear()
        _private_cache[(info.path, stamp)] = key
    return key


def canonical_header(raw: bytes) -> bytes:
    """rfc6376:3.4.2 relaxed: lowercase name, unfold, one space for runs of WSP, no WSP at
    the ends of the value or around the colon; CRLF ended."""
    name, _, value = raw.partition(b":")
    value = _WSP.sub(b" ", _FOLD.sub(b"", value).rstrip(b"\r\n")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def canonical_body(body: bytes) -> bytes:
    """rfc6376:3.4.4 relaxed: no WSP at line ends, one space for runs of WSP, no empty
    lines at the end, CRLF line ends; an empty body stays empty."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final line end, not an empty line
    out = [_WSP.sub(b" ", line.rstrip(b"\r")).rstrip(b" ") for line in lines]
    while out and out[-1] == b"":
        out.pop()
    return b"".join(line + b"\r\n" for line in out)


def _selected(header: bytes, names: list[str]) -> list[bytes]:
    """rfc6376:5.4.2 for each name in h=, the last instance not yet used (from the bottom);
    a name with no instance left contributes nothing."""
    fields: dict[str, list[bytes]] = {}
    for f in iter_fields(header):
        if f.name:
            fields.setdefault(f.name, []).append(f.raw)
    out: list[bytes] = []
    for name in names:
        stack = fields.get(name)
        if stack:
            out.append(stack.pop())
    return out


def _include_headers(header: bytes) -> list[str]:
    present = {f.name for f in iter_fields(header)}
    names = [h for h in SIGNED_HEADERS if h in present]
    if "from" not in names:
        names.insert(0, "from")  # rfc6376:5.4 From is required; signing it absent is harmless
    return names + [h for h in _OVERSIGNED if h in names]


def _fold_b64(value: str, width: int = 72) -> str:
    return "\r\n\t".join(value[i : i + width] for i in range(0, len(value), width))


def _signature_field(
    info: KeyInfo, names: list[str], canon_headers: bytes, body_hash: str, now: int
) -> bytes:
    prefix = (
        f"DKIM-Signature: v=1; a={_ALGORITHMS[info.algorithm]}; c=relaxed/relaxed;\r\n"
        f"\td={info.domain}; s={info.selector}; t={now};\r\n"
        f"\th={':'.join(names)};\r\n"
        f"\tbh={body_hash};\r\n"
        "\tb="
    ).encode("ascii")
    # rfc6376:3.7 the signature field itself, b= empty, canonicalized, without its CRLF.
    data = canon_headers + canonical_header(prefix)[:-2]
    key = _private_key(info)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # rfc8463:3 Ed25519 signs the SHA-256 hash of the data.
        signature = key.sign(hashlib.sha256(data).digest())
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    b64 = base64.b64encode(signature).decode("ascii")
    return prefix + _fold_b64(b64).encode("ascii") + b"\r\n"


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
    header, rest = split_message(message)
    body = rest[2:] if rest.startswith(b"\r\n") else rest[1:] if rest.startswith(b"\n") else rest
    body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode("ascii")
    names = _include_headers(header)
    canon = b"".join(canonical_header(raw) for raw in _selected(header, names))
    stamp = int(time.time() if now is None else now)
    fields = [_signature_field(info, names, canon, body_hash, stamp) for info in keys]
    return b"".join(fields) + message
