"""The IMAP command grammar (rfc9051:9, rfc3501:9), one module per rule.

Every rule is a function taking a ``Cursor`` positioned at its first byte and returning a value,
or raising ``ParseError``. The cursor works on one complete command: the command line with each
literal's octets inline after its ``{n}CRLF`` (``merpati.imap.framing`` assembles that). No rule
reads beyond the buffer, allocates more than the input, or recurses without a depth bound.
"""

from merpati.imap.parse.cursor import Cursor, LimitExceeded, ParseError

__all__ = ["Cursor", "LimitExceeded", "ParseError"]
