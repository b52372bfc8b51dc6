"""SMTP replies: a small value type and every fixed reply the server sends, in one place.

rfc5321:4.2 a reply is a three-digit code and text; multi-line replies use "-" after the code on
every line but the last. rfc2034:3 every reply carries an enhanced status code (rfc3463) after
the code, except the greeting and the answers to HELO/EHLO. Reply text never contains exception
text or anything the client did not already send us.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReplyKind:
    """What a reply code's first digit says (rfc5321:4.2.1), for the replies we send and the
    ones we read as a client (``merpati.queue.smtpproto``)."""

    __slots__ = ()
    code: int

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500


@dataclass(frozen=True, slots=True)
class Reply(ReplyKind):
    code: int
    status: str  # enhanced status code "x.y.z", or "" for the greeting and EHLO
    lines: tuple[str, ...]

    def __bytes__(self) -> bytes:
        prefix = f"{self.status} " if self.status else ""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8", "replace")

    def __str__(self) -> str:
        return bytes(self).decode("utf-8").rstrip("\r\n")


def reply(code: int, status: str, text: str) -> Reply:
    return Reply(code, status, (text,))


# Session level.
CLOSING = reply(221, "2.0.0", "Bye")
OK = reply(250, "2.0.0", "OK")
RESET_OK = reply(250, "2.0.0", "Reset")
NOOP_OK = reply(250, "2.0.0", "OK")
MAIL_OK = reply(250, "2.1.0", "Sender OK")
RCPT_OK = reply(250, "2.1.5", "Recipient OK")
# rfc5321:3.5.3 VRFY may answer 252 without confirming anything: no user enumeration.
VRFY_CANNOT = reply(252, "2.5.0", "Cannot VRFY user; send mail and it will be delivered or bounced")
# rfc5321:3.5.2 EXPN may be refused; expanding aliases would list who receives them.
EXPN_REFUSED = reply(502, "5.5.1", "EXPN not available")
HELP = Reply(
    214,
    "2.0.0",
    (
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
        "See RFC 5321",
    ),
)
START_DATA = reply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_TLS = reply(220, "2.0.0", "Ready to start TLS")
AUTH_OK = reply(235, "2.7.0", "Authentication successful")

# Transient failures.
BUSY = reply(421, "4.7.0", "Too many connections, try later")
TIMEOUT = reply(421, "4.4.2", "Timeout, closing connection")
DEADLINE = reply(421, "4.4.2", "Transaction took too long, closing connection")
TOO_MANY_ERRORS = reply(421, "4.7.0", "Too many errors, closing connection")
TOO_MANY_JUNK = reply(421, "4.7.0", "Too many commands without mail, closing connection")
SHUTTING_DOWN = reply(421, "4.3.2", "Server shutting down, try later")
TEMP_FAILURE = reply(451, "4.3.0", "Temporary failure, try again later")
NO_QUEUE = reply(451, "4.3.0", "Cannot relay to remote recipients now, try again later")
TOO_MANY_RCPTS = reply(452, "4.5.3", "Too many recipients")
OVER_QUOTA = reply(452, "4.2.2", "Mailbox full")
AUTH_TEMP = reply(454, "4.7.0", "Temporary authentication failure")

# Permanent failures: syntax and sequence.
LINE_TOO_LONG = reply(500, "5.5.2", "Line too long (rfc5321:4.5.3.1.4)")
TEXT_LINE_TOO_LONG = reply(500, "5.5.6", "Text line too long (rfc5321:4.5.3.1.6)")
AUTH_LINE_TOO_LONG = reply(500, "5.5.6", "Authentication exchange line too long")
UNKNOWN_COMMAND = reply(500, "5.5.2", "Command unrecognised")
SYNTAX_ERROR = reply(501, "5.5.4", "Syntax error in parameters or arguments")
NUL_IN_COMMAND = reply(500, "5.5.2", "NUL byte in command")
NON_ASCII_COMMAND = reply(500, "5.5.2", "Command must be ASCII")
BAD_ADDRESS = reply(501, "5.1.3", "Bad address syntax")
UTF8_NEEDS_SMTPUTF8 = reply(553, "5.6.7", "UTF-8 address needs SMTPUTF8")
UNKNOWN_PARAM = reply(555, "5.5.4", "Unsupported MAIL/RCPT parameter")
BAD_SEQUENCE = reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = reply(503, "5.5.1", "Send MAIL first")
NO_VALID_RCPTS = reply(554, "5.5.1", "No valid recipients")
NESTED_MAIL = reply(503, "5.5.1", "Sender already given")
ALREADY_AUTH = reply(503, "5.5.1", "Already authenticated")
NO_AUTH_IN_TRANSACTION = reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
TLS_ACTIVE = reply(503, "5.5.1", "TLS already active")
BINARY_NEEDS_BDAT = reply(503, "5.5.1", "BODY=BINARYMIME needs BDAT")
BDAT_AFTER_FAILURE = reply(503, "5.5.1", "Transaction failed earlier; send RSET")
NO_TLS = reply(502, "5.5.1", "STARTTLS not offered here")

# Permanent failures: policy and content.
MESSAGE_TOO_BIG = reply(552, "5.3.4", "Message too big")
DECLARED_TOO_BIG = reply(552, "5.3.4", "Declared message size exceeds the limit")
BARE_LINE_END = reply(
    550, "5.6.0", "Bare CR or LF in message; lines must end with CRLF (SMTP smuggling defence)"
)
NUL_IN_DATA = reply(550, "5.6.0", "NUL byte in message")
LOOP = reply(554, "5.4.6", "Too many Received headers: mail loop")
AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
TLS_REQUIRED_FOR_AUTH = reply(538, "5.7.11", "Encryption required for authentication")
AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_CANCELLED = reply(501, "5.0.0", "Authentication cancelled")
AUTH_MALFORMED = reply(501, "5.5.2", "Cannot decode authentication response")
AUTH_UNKNOWN_MECH = reply(504, "5.5.4", "Unrecognised authentication mechanism")
RELAY_DENIED = reply(554, "5.7.1", "Relay access denied")
NO_SUCH_USER = reply(550, "5.1.1", "No such user here")
SENDER_NOT_OWNED = reply(553, "5.7.1", "Sender address not owned by the authenticated user")
NULL_SENDER_NOT_ALLOWED = reply(553, "5.7.1", "Null sender not allowed on submission")
