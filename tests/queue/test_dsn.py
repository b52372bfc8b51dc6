"""DSN construction (rfc3464), checked by parsing the result with the email package."""

from __future__ import annotations

import email
import email.policy

from merpati.queue.dsn import DEFAULT_RETURN_LIMIT, DSNRecipient, build_dsn, xtext_decode

ORIGINAL = b"From: a@a.test\r\nMessage-ID: <x@a.test>\r\nSubject: s\r\n\r\nbody line\r\n"


def build(**kw: object) -> email.message.Message:
    args: dict[str, object] = {
        "reporting_mta": "mx.a.test",
        "sender": "a@a.test",
        "original": ORIGINAL,
        "recipients": [
            DSNRecipient(
                "b@b.test",
                "failed",
                "5.1.1",
                "550 5.1.1 unknown",
                orcpt="rfc822;B+40b.test",
                remote_mta="mx.b.test",
                diagnostic="550 5.1.1 unknown\r\nuser",
                last_attempt=1_700_000_000.0,
            ),
            DSNRecipient("c@b.test", "delayed", "4.2.2", "452 full", will_retry_until=1.7e9),
        ],
        "arrival": 1_700_000_000.0,
        "now": 1_700_000_100.0,
        "token": "tok",
    }
    args.update(kw)
    raw = build_dsn(**args)  # type: ignore[arg-type]
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_structure_and_fields() -> None:
    msg = build(envid="e+2B1", ret="FULL")
    assert msg.get_content_type() == "multipart/report"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.a.test>"
    assert msg["References"] == "<x@a.test>"
    human, report, original = msg.get_payload()  # type: ignore[misc]
    assert "b@b.test" in human.get_payload()
    blocks = report.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mx.a.test"
    assert blocks[0]["Original-Envelope-Id"] == "e+1"
    assert blocks[1]["Original-Recipient"] == "rfc822;B@b.test"
    assert blocks[1]["Final-Recipient"] == "rfc822; b@b.test"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown user"  # one line
    assert blocks[1]["Last-Attempt-Date"]
    assert blocks[2]["Action"] == "delayed" and blocks[2]["Will-Retry-Until"]
    assert "Remote-MTA" not in blocks[2]
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["Subject"] == "s"


def test_headers_only_for_hdrs_or_large_messages() -> None:
    msg = build(ret="HDRS")
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"  # type: ignore[index]
    big = ORIGINAL + b"x" * DEFAULT_RETURN_LIMIT
    msg = build(original=big)
    part = msg.get_payload()[2]  # type: ignore[index]
    assert part.get_content_type() == "text/rfc822-headers"
    assert b"xxxx" not in part.as_bytes()
    assert build().get_payload()[2].get_content_type() == "message/rfc822"  # type: ignore[index]


def test_success_and_utf8() -> None:
    msg = build(
        recipients=[DSNRecipient("bø@b.test", "delivered", "2.0.0", "250 ok")], sender="á@a.test"
    )
    assert msg["Subject"] == "Successful Mail Delivery Report"
    parts = msg.get_payload()
    assert parts[1].get_content_type() == "message/global-delivery-status"  # type: ignore[index]
    assert parts[2].get_content_type() == "message/global"  # type: ignore[index]


def test_xtext_decode() -> None:
    assert xtext_decode("a+2Bb+3D") == "a+b="
    assert xtext_decode("caf+C3+A9") == "café"
