"""Per-domain DKIM keys in the data directory: creation, rotation, listing, removal, and the
DNS TXT record that publishes each key.

Layout: ``DATA_DIR/dkim/DOMAIN/SELECTOR.rsa.pem`` (RSA 2048, PKCS#1 PEM, as dkimpy reads it) and
``SELECTOR.ed25519.pem`` (rfc8463, PKCS#8 PEM), mode 0600, plus ``keys.json`` recording when
each key set was made. Keys are made in sets of two, one RSA and one Ed25519, both used to
sign every message (rfc8463:3 recommends signing with both while verifiers adopt Ed25519).

Selector scheme: ``r`` (RSA) or ``e`` (Ed25519) + the UTC date ``YYYYMMDD`` of creation, plus a
letter ``b``..``z`` for a second and later set made on the same day: ``r20261123`` and
``e20261123``, then ``r20261123b``/``e20261123b``. Names sort by age.

Rotation adds a set and keeps every older set published until ``remove_selector``. Signing
(``signing_keys``) uses the newest set once it is ``rotation_delay`` old, so the new records
have time to reach DNS caches; until then it keeps the previous set. A domain whose only set
is new signs with it at once.

This module touches only files under ``DATA_DIR/dkim``; it does no DNS and no signing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from merpati import address
from merpati.errors import OperationalError

__all__ = [
    "DEFAULT_ROTATION_DELAY",
    "RSA_BITS",
    "DkimKeyError",
    "KeyInfo",
    "canonical_domain",
    "create_keys",
    "dkimpy_private_key",
    "domain_dir",
    "list_selectors",
    "remove_selector",
    "rotate",
    "signing_keys",
    "txt_record",
]

Algorithm = Literal["rsa", "ed25519"]
RSA_BITS = 2048  # rfc8301:3.2 at least 1024, 2048 is what large receivers expect
DEFAULT_ROTATION_DELAY = 86400.0  # a new key set signs after one day (DNS caches)
_PREFIX: dict[Algorithm, str] = {"rsa": "r", "ed25519": "e"}
_SUFFIXES: tuple[str, ...] = ("", *string.ascii_lowercase[1:])
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SELECTOR = re.compile(r"[re]\d{8}[b-z]?")


class DkimKeyError(OperationalError):
    """A DKIM key operation that cannot be done (bad domain, unknown selector...)."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    domain: str
    selector: str
    algorithm: Algorithm
    created: float  # Unix time the set was made
    path: Path

    @property
    def key_set(self) -> str:
        """The date-and-letter part shared by the RSA and Ed25519 key of one set."""
        return self.selector[1:]


def canonical_domain(domain: str) -> str:
    """Lowercase A-label form (as the account store keeps domains); refuses anything that is
    not a host name, since it names a directory."""
    try:
        ascii_form = address.canonical_domain(domain)
    except address.AddressError:
        raise DkimKeyError(f"{domain!r} is not a valid domain name") from None
    labels = ascii_form.split(".")
    if len(ascii_form) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise DkimKeyError(f"{domain!r} is not a valid domain name")
    return ascii_form


def domain_dir(data_dir: Path, domain: str) -> Path:
    return data_dir / "dkim" / canonical_domain(domain)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret durably with mode 0600 from the first byte (tmp + fsync + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _read_meta(directory: Path) -> dict[str, float]:
    try:
        raw = json.loads((directory / "keys.json").read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DkimKeyError(f"{directory / 'keys.json'}: unreadable ({exc})") from None
    sets = raw.get("sets", {}) if isinstance(raw, dict) else {}
    return {str(k): float(v) for k, v in sets.items() if isinstance(v, int | float)}


def _write_meta(directory: Path, sets: dict[str, float]) -> None:
    text = json.dumps({"sets": dict(sorted(sets.items()))}, indent=1) + "\n"
    _write_private(directory / "keys.json", text.encode("utf-8"))


def _scan(directory: Path, domain: str) -> list[KeyInfo]:
    meta = _read_meta(directory)
    found: list[KeyInfo] = []
    if not directory.is_dir():
        return found
    for path in directory.glob("*.pem"):
        parts = path.name.split(".")
        if len(parts) != 3 or not _SELECTOR.fullmatch(parts[0]):
            continue
        algorithm: Algorithm
        if parts[1] == "rsa" and parts[0][0] == "r":
            algorithm = "rsa"
        elif parts[1] == "ed25519" and parts[0][0] == "e":
            algorithm = "ed25519"
        else:
            continue
        created = meta.get(parts[0][1:], path.stat().st_mtime)
        found.append(KeyInfo(domain, parts[0], algorithm, created, path))
    # Oldest first; within a set RSA before Ed25519.
    found.sort(key=lambda k: (k.created, k.key_set, k.algorithm != "rsa"))
    return found


def list_selectors(data_dir: Path, domain: str) -> list[KeyInfo]:
    """Every key of ``domain``, oldest set first."""
    canonical = canonical_domain(domain)
    return _scan(data_dir / "dkim" / canonical, canonical)


def _new_set(directory: Path, now: float) -> str:
    day: str = time.strftime("%Y%m%d", time.gmtime(now))
    taken = {p.name.split(".")[0][1:] for p in directory.glob("*.pem")}
    taken |= set(_read_meta(directory))
    for suffix in _SUFFIXES:
        if day + suffix not in taken:
            return day + suffix
    raise DkimKeyError(f"too many DKIM key sets made on {day} for {directory.name}")


def _generate(directory: Path, key_set: str, now: float) -> list[str]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_pem = ed_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    selectors = [_PREFIX["rsa"] + key_set, _PREFIX["ed25519"] + key_set]
    _write_private(directory / f"{selectors[0]}.rsa.pem", rsa_pem)
    _write_private(directory / f"{selectors[1]}.ed25519.pem", ed_pem)
    meta = _read_meta(directory)
    meta[key_set] = now
    _write_meta(directory, meta)
    return selectors


def create_keys(data_dir: Path, domain: str, *, now: float | None = None) -> list[str]:
    """Make the first key set of ``domain`` and return its selectors (RSA, Ed25519).

    Idempotent: a domain that already has keys keeps them, and their selectors are returned.
    """
    canonical = canonical_domain(domain)
    directory = data_dir / "dkim" / canonical
    when = time.time() if now is None else now
    with _locked(directory):
        existing = _scan(directory, canonical)
        if existing:
            return [k.selector for k in existing]
        return _generate(directory, _new_set(directory, when), when)


def rotate(data_dir: Path, domain: str, *, now: float | None = None) -> list[str]:
    """Add a new key set to ``domain`` and return its selectors; older sets stay published."""
    canonical = canonical_domain(domain)
    directory = data_dir / "dkim" / canonical
    when = time.time() if now is None else now
    with _locked(directory):
        return _generate(directory, _new_set(directory, when), when)


def signing_keys(
    data_dir: Path,
    domain: str,
    *,
    now: float | None = None,
    rotation_delay: float = DEFAULT_ROTATION_DELAY,
) -> list[KeyInfo]:
    """The key set that signs mail of ``domain`` now (empty if the domain has no keys)."""
    keys = list_selectors(data_dir, domain)
    if not keys:
        return []
    when = time.time() if now is None else now
    sets: dict[str, list[KeyInfo]] = {}
    for k in keys:
        sets.setdefault(k.key_set, []).append(k)
    ordered = list(sets.values())  # oldest first (keys are sorted by age)
    ripe = [s for s in ordered if when - s[0].created >= rotation_delay]
    return ripe[-1] if ripe else ordered[0]


def remove_selector(data_dir: Path, domain: str, selector: str) -> None:
    """Delete one key; its DNS record may be withdrawn afterwards."""
    canonical = canonical_domain(domain)
    directory = data_dir / "dkim" / canonical
    with _locked(directory):
        keys = {k.selector: k for k in _scan(directory, canonical)}
        info = keys.get(selector.strip().lower())
        if info is None:
            raise DkimKeyError(f"{canonical} has no DKIM selector {selector!r}")
        info.path.unlink()
        if not any(k.key_set == info.key_set for k in keys.values() if k is not info):
            meta = _read_meta(directory)
            meta.pop(info.key_set, None)
            _write_meta(directory, meta)


def _private_key(info: KeyInfo) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(info.path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise DkimKeyError(f"{info.path}: cannot load the DKIM key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"{info.path}: not an RSA or Ed25519 key")
    return key


def dkimpy_private_key(info: KeyInfo) -> bytes:
    """The private key in the form dkimpy's signer takes: PKCS#1 PEM for RSA, the base64
    32-byte seed for Ed25519."""
    key = _private_key(info)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def txt_record(info: KeyInfo) -> str:
    """The TXT value published at ``SELECTOR._domainkey.DOMAIN`` (rfc6376:3.6.1)."""
    key = _private_key(info)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # rfc8463:4.2 p= is the base64 of the raw 32-byte public key.
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
