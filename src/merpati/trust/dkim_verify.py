"""DKIM (rfc6376) and ARC (rfc8617) verification of received mail with dkimpy's verifier.

dkimpy asks DNS through a synchronous ``dnsfunc``. We never let it: the key records every
signature names are fetched first, concurrently, through the shared async ``Lookup`` (with
its cache and timeouts), and dkimpy then verifies in a worker thread against those answers
only (the hashing of a large body must not stall the event loop). A key that could not be
fetched because DNS failed makes that signature ``temperror``; a missing key, ``permerror``.

Limits: at most ``MAX_SIGNATURES`` DKIM signatures are evaluated per message (rfc6376:6.1
lets a verifier limit them); ``rsa-sha1`` never passes (rfc8301:3.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import dkim
import dkim.util

from merpati.trust.headers import iter_fields, split_message
from merpati.trust.lookup import DnsTempError, Lookup

__all__ = [
    "MAX_SIGNATURES",
    "ArcOutcome",
    "DkimOutcome",
    "verify_arc",
    "verify_dkim",
]

MAX_SIGNATURES = 10
MIN_RSA_BITS = 1024  # rfc8301:3.2

DkimResult = Literal["pass", "fail", "neutral", "policy", "temperror", "permerror"]


@dataclass(frozen=True, slots=True)
class DkimOutcome:
    result: DkimResult
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    b_prefix: str  # the first 8 characters of b=, to tell signatures apart (rfc6008)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArcOutcome:
    result: Literal["none", "pass", "fail"]
    instances: int  # the number of ARC sets found
    reason: str = ""


_KeyMap = dict[bytes, bytes | None]  # "s._domainkey.d" -> TXT, None for no record


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        parsed = dkim.util.parse_tag_value(value)
    except (dkim.util.InvalidTagValueList, ValueError):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(k, bytes) and isinstance(v, bytes)}


def _signatures(message: bytes, names: Iterable[str]) -> list[dict[bytes, bytes]]:
    header, _ = split_message(message)
    wanted = set(names)
    out: list[dict[bytes, bytes]] = []
    for f in iter_fields(header):
        if f.name in wanted:
            _, _, value = f.raw.partition(b":")
            out.append(_tags(value))
    return out


def _key_name(tags: dict[bytes, bytes]) -> bytes | None:
    s, d = tags.get(b"s"), tags.get(b"d")
    if not s or not d:
        return None
    return (s + b"._domainkey." + d).lower().rstrip(b".")


async def _fetch_keys(lookup: Lookup, names: set[bytes]) -> tuple[_KeyMap, set[bytes]]:
    """TXT of each key name; also the names whose lookup failed temporarily."""

    async def one(name: bytes) -> tuple[bytes, bytes | None, bool]:
        try:
            answers = await lookup.txt(name.decode("ascii", "replace"))
        except DnsTempError:
            return name, None, True
        return name, (answers[0] if answers else None), False

    found: _KeyMap = {}
    failed: set[bytes] = set()
    for name, txt, temp in await asyncio.gather(*(one(n) for n in sorted(names))):
        found[name] = txt
        if temp:
            failed.add(name)
    return found, failed


def _dnsfunc(keys: _KeyMap) -> object:
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return keys.get(name.lower().rstrip(b"."))

    return dnsfunc


def _verify_one(message: bytes, idx: int, keys: _KeyMap) -> tuple[bool, str]:
    try:
        verifier = dkim.DKIM(message, minkey=MIN_RSA_BITS)
        ok = bool(verifier.verify(idx=idx, dnsfunc=_dnsfunc(keys)))
    except Exception as exc:  # dkimpy parsing hostile input raises more than DKIMException
        return False, f"unusable message or signature: {type(exc).__name__}"
    return ok, "" if ok else "signature did not verify"


async def verify_dkim(message: bytes, lookup: Lookup) -> list[DkimOutcome]:
    """One outcome per DKIM-Signature (at most ``MAX_SIGNATURES``), in header order."""
    sigs = _signatures(message, ["dkim-signature"])[:MAX_SIGNATURES]
    if not sigs:
        return []
    names = {n for n in (_key_name(t) for t in sigs) if n is not None}
    keys, failed = await _fetch_keys(lookup, names)

    def verify_all() -> list[DkimOutcome]:
        outcomes: list[DkimOutcome] = []
        for idx, tags in enumerate(sigs):
            d = tags.get(b"d", b"").decode("ascii", "replace").lower()
            s = tags.get(b"s", b"").decode("ascii", "replace")
            a = tags.get(b"a", b"").decode("ascii", "replace").lower()
            b = b"".join(tags.get(b"b", b"").split()).decode("ascii", "replace")[:8]
            name = _key_name(tags)
            result: DkimResult
            if name is None:
                result, reason = "permerror", "signature lacks d= or s="
            elif name in failed:
                result, reason = "temperror", "key lookup failed"
            elif keys.get(name) is None:
                result, reason = "permerror", "no key published"
            elif a == "rsa-sha1":
                result, reason = "policy", "rsa-sha1 is not accepted"
            else:
                ok, reason = _verify_one(message, idx, keys)
                result = "pass" if ok else "fail"
            outcomes.append(DkimOutcome(result, d, s, a, b, reason))
        return outcomes

    return await asyncio.to_thread(verify_all)


async def verify_arc(message: bytes, lookup: Lookup) -> ArcOutcome:
    """rfc8617:5.2 the chain validation status of the ARC sets on ``message``."""
    sets = _signatures(message, ["arc-seal", "arc-message-signature"])
    if not sets:
        return ArcOutcome("none", 0)
    instances = len(_signatures(message, ["arc-seal"]))
    names = {n for n in (_key_name(t) for t in sets) if n is not None}
    keys, failed = await _fetch_keys(lookup, names)
    if failed:
        return ArcOutcome("fail", instances, "temporary DNS error fetching ARC keys")

    def run() -> ArcOutcome:
        try:
            cv, _results, reason = dkim.arc_verify(
                message, dnsfunc=_dnsfunc(keys), minkey=MIN_RSA_BITS
            )
        except Exception as exc:  # dkimpy parsing hostile input raises more than DKIMException
            return ArcOutcome("fail", instances, type(exc).__name__)
        text = cv.decode("ascii", "replace") if isinstance(cv, bytes) else str(cv)
        result: Literal["none", "pass", "fail"] = (
            "pass" if text == "pass" else "none" if text == "none" else "fail"
        )
        return ArcOutcome(result, instances, str(reason or ""))

    return await asyncio.to_thread(run)
