"""The parsed-once structure of a message, as the store keeps it and IMAP reads it.

Offsets are byte offsets into the stored message (CRLF line ends). Header values are the raw
bytes of the field (unfolded, RFC 2047 encoded-words kept as they are), because ENVELOPE and
BODYSTRUCTURE send them as sent (rfc3501:7.4.2). The scanner that builds these lives in
``merpati.mime.scan``; it never fails: malformed input gets a best-effort structure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnvelopeAddress:
    """rfc3501:7.4.2 address structure; a group is (None, None, name, None) ... (None,)*4."""

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None


@dataclass(frozen=True, slots=True)
class Envelope:
    date: bytes | None
    subject: bytes | None
    from_: tuple[EnvelopeAddress, ...] | None
    sender: tuple[EnvelopeAddress, ...] | None  # defaults to from_ (rfc3501:7.4.2)
    reply_to: tuple[EnvelopeAddress, ...] | None  # defaults to from_
    to: tuple[EnvelopeAddress, ...] | None
    cc: tuple[EnvelopeAddress, ...] | None
    bcc: tuple[EnvelopeAddress, ...] | None
    in_reply_to: bytes | None
    message_id: bytes | None


@dataclass(frozen=True, slots=True)
class BodyPart:
    header_start: int  # first byte of this part's MIME header
    body_start: int  # first byte after the blank line (== header end)
    end: int  # one past the last byte of the body
    type: str  # as sent, e.g. "text", "multipart" (default "text")
    subtype: str  # e.g. "plain" (default "plain")
    params: tuple[tuple[str, str], ...]  # Content-Type parameters, in order
    id: bytes | None
    description: bytes | None
    encoding: str  # Content-Transfer-Encoding, default "7BIT"
    md5: bytes | None
    disposition: tuple[str, tuple[tuple[str, str], ...]] | None
    language: tuple[str, ...] | None
    location: bytes | None
    lines: int  # body lines (text/* and message/rfc822 report it)
    parts: tuple[BodyPart, ...]  # children of a multipart; empty otherwise
    # For message/rfc822 (and message/global): the encapsulated message.
    message: MessageStructure | None

    @property
    def size(self) -> int:
        return self.end - self.body_start


@dataclass(frozen=True, slots=True)
class MessageStructure:
    envelope: Envelope
    body: BodyPart  # the top-level part; header_start == 0 for a top-level message
    # Decoded values of the fields SEARCH and SORT use (lowercased names -> unicode text).
    search_headers: tuple[tuple[str, str], ...] = ()
