"""The envelope as JSON, for the two places that keep one on disk: the intake journal and the
outbound queue. One spelling, so a message moved from one to the other keeps every field
(the DSN parameters of rfc3461 and the ``extra`` hints such as the Junk folder).
"""

from __future__ import annotations

from typing import Any, cast

from merpati.delivery.api import BodyType, Envelope, Recipient


def envelope_fields(env: Envelope) -> dict[str, Any]:
    """Everything but the reverse-path and the recipients (stored beside them)."""
    return {
        "body": env.body.value,
        "smtputf8": env.smtputf8,
        "ret": env.ret,
        "envid": env.envid,
        "auth_user": env.auth_user,
        "client_ip": env.client_ip,
        "helo": env.helo,
        "is_bounce": env.is_bounce,
        "extra": dict(env.extra),
    }


def envelope_from_fields(
    mail_from: str, fields: dict[str, Any], recipients: tuple[Recipient, ...]
) -> Envelope:
    return Envelope(
        mail_from=mail_from,
        recipients=recipients,
        body=BodyType(fields.get("body", "7BIT")),
        smtputf8=bool(fields.get("smtputf8")),
        ret=fields.get("ret"),
        envid=fields.get("envid"),
        auth_user=fields.get("auth_user"),
        client_ip=fields.get("client_ip"),
        helo=fields.get("helo"),
        is_bounce=bool(fields.get("is_bounce")),
        extra={str(k): str(v) for k, v in (fields.get("extra") or {}).items()},
    )


def recipient_fields(rcpt: Recipient) -> list[Any]:
    return [rcpt.address, sorted(rcpt.notify), rcpt.orcpt]


def recipient_from_fields(fields: list[Any]) -> Recipient:
    address, notify, orcpt = fields
    return Recipient(str(address), cast(Any, frozenset(notify)), orcpt)


def envelope_to_dict(env: Envelope) -> dict[str, Any]:
    """The whole envelope, recipients included."""
    return {
        "from": env.mail_from,
        "rcpts": [recipient_fields(r) for r in env.recipients],
        **envelope_fields(env),
    }


def envelope_from_dict(d: dict[str, Any]) -> Envelope:
    rcpts = tuple(recipient_from_fields(r) for r in d["rcpts"])
    return envelope_from_fields(str(d["from"]), d, rcpts)
