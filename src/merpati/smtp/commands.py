"""Parse one SMTP command line into a small frozen value object, or raise ``CommandError``.

Covers the commands and MAIL/RCPT parameters Merpati implements: rfc5321:4.1.1 (EHLO, HELO,
MAIL, RCPT, DATA, RSET, VRFY, HELP, NOOP, QUIT), rfc3207 STARTTLS, rfc4954 AUTH, rfc3030 BDAT,
and the parameters SIZE (rfc1870), BODY (rfc6152, rfc3030), SMTPUTF8 (rfc6531), RET/ENVID/
NOTIFY/ORCPT (rfc3461) and AUTH= (rfc4954:5, accepted and ignored). Paths are checked against
rfc5321:4.1.2 extended by rfc6531:3.3 for UTF-8. It does not decide whether a command is
allowed now (the session's state table does) nor whether an address is acceptable (policy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from merpati.delivery.api import BodyType
from merpati.smtp import limits, replies
from merpati.smtp.replies import Reply


class CommandError(Exception):
    """The command cannot be parsed; ``reply`` says why (a 5xx)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Helo:
    domain: str
    extended: bool  # EHLO


@dataclass(frozen=True, slots=True)
class Mail:
    address: str  # "" is the null reverse-path
    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None


Notify = Literal["SUCCESS", "FAILURE", "DELAY", "NEVER"]


@dataclass(frozen=True, slots=True)
class Rcpt:
    address: str
    notify: frozenset[Notify] = frozenset()
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str
    initial: bytes | None  # the base64 initial response as sent; b"=" is an empty one


Command = Helo | Mail | Rcpt | Data | Bdat | Rset | Noop | Quit | Vrfy | Help | StartTLS | Auth

# Longest line each verb may use (including CRLF); anything else is limited by COMMAND_LINE_MAX.
LINE_LIMITS: dict[bytes, int] = {
    b"MAIL": limits.MAIL_RCPT_LINE_MAX,
    b"RCPT": limits.MAIL_RCPT_LINE_MAX,
    b"AUTH": limits.AUTH_LINE_MAX,
}


def verb_of(line: bytes) -> bytes:
    """The upper-cased first word of a command line (no CRLF)."""
    return line.split(b" ", 1)[0][:16].upper()


# rfc5321:4.1.2 atext, plus UTF-8 (rfc6531:3.3) when allowed; checked on str.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_QUOTED_ASCII = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL_ASCII = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_LABEL_UTF8 = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_DOMAIN_ASCII = re.compile(rf"{_LABEL_ASCII}(?:\.{_LABEL_ASCII})*")
_DOMAIN_UTF8 = re.compile(rf"{_LABEL_UTF8}(?:\.{_LABEL_UTF8})*")
# rfc5321:4.1.3 address literals: IPv4, IPv6, or a general literal tag:content.
_ADDRESS_LITERAL = re.compile(
    r"\[(?:[0-9.]+|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9\-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+)\]"
)
# rfc5321:4.1.2 A-d-l: an obsolete source route "@one,@two:" before the mailbox, ignored.
_SOURCE_ROUTE = re.compile(r"@[^:,<>@]+(?:,@[^:,<>@]+)*:")
# rfc3461:4 xtext: printable ASCII but "+" and "=", with "+XX" hex escapes.
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


def parse_mailbox(text: str, utf8: bool) -> str:
    """``local@domain`` as it may appear in a path; returns it with the domain lowercased.

    Raises CommandError(BAD_ADDRESS) for anything that is not an rfc5321:4.1.2 Mailbox, and
    UTF8_NEEDS_SMTPUTF8 for a UTF-8 address when SMTPUTF8 is off.
    """
    if not text.isascii() and not utf8:
        raise CommandError(replies.UTF8_NEEDS_SMTPUTF8)
    at = text.rfind("@")
    if at <= 0:
        raise CommandError(replies.BAD_ADDRESS)
    local, domain = text[:at], text[at + 1 :]
    dot_string = _DOT_STRING_UTF8 if utf8 else _DOT_STRING_ASCII
    quoted = _QUOTED_UTF8 if utf8 else _QUOTED_ASCII
    if not (dot_string.fullmatch(local) or quoted.fullmatch(local)):
        raise CommandError(replies.BAD_ADDRESS)
    if len(local.encode()) > limits.LOCAL_PART_MAX:
        raise CommandError(replies.BAD_ADDRESS)
    domain_re = _DOMAIN_UTF8 if utf8 else _DOMAIN_ASCII
    if domain.startswith("["):
        if not _ADDRESS_LITERAL.fullmatch(domain):
            raise CommandError(replies.BAD_ADDRESS)
    elif not domain_re.fullmatch(domain) or len(domain.encode()) > limits.DOMAIN_MAX:
        raise CommandError(replies.BAD_ADDRESS)
    return f"{local}@{domain.lower()}"


def _split_path(rest: str, prefix: str) -> tuple[str, str]:
    """Split ``FROM:<path> params`` into (path without brackets, params)."""
    if rest[: len(prefix)].upper() != prefix:
        raise CommandError(replies.SYNTAX_ERROR)
    rest = rest[len(prefix) :].lstrip(" ")  # tolerate "MAIL FROM: <x>" as many clients send it
    if not rest.startswith("<"):
        raise CommandError(replies.BAD_ADDRESS)
    end = rest.find(">")
    # A quoted local part may hold ">": find the closing bracket after any quoted string.
    if '"' in rest[:end]:
        m = re.match(r'<(?:[^">]|"(?:[^"\\]|\\.)*")*>', rest)
        end = m.end() - 1 if m else -1
    if end < 0:
        raise CommandError(replies.BAD_ADDRESS)
    path = rest[1:end]
    if len(path.encode()) > limits.PATH_MAX:
        raise CommandError(replies.BAD_ADDRESS)
    m = _SOURCE_ROUTE.match(path)
    if m:
        path = path[m.end() :]
    params = rest[end + 1 :]
    if params and not params.startswith(" "):
        raise CommandError(replies.SYNTAX_ERROR)
    return path, params.strip(" ")


def _params(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        key = key.upper()
        value_or_none = value if eq else None
        if key in out and out[key] == value_or_none:
            continue  # the same parameter twice (smtplib can do this) is harmless
        if not key or key in out or (eq and not value):
            raise CommandError(replies.SYNTAX_ERROR)
        out[key] = value_or_none
    return out


def _xtext(value: str | None, maximum: int) -> str:
    if value is None or len(value) > maximum or not _XTEXT.fullmatch(value):
        raise CommandError(replies.SYNTAX_ERROR)
    return value


def _mail(rest: str) -> Mail:
    path, ptext = _split_path(rest, "FROM:")
    params = _params(ptext)
    smtputf8 = False
    if "SMTPUTF8" in params:
        if params.pop("SMTPUTF8") is not None:
            raise CommandError(replies.SYNTAX_ERROR)
        smtputf8 = True
    address = "" if path == "" else parse_mailbox(path, smtputf8)
    size: int | None = None
    body: BodyType | None = None
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    for key, value in params.items():
        if key == "SIZE":  # rfc1870:6
            if value is None or not value.isdigit() or len(value) > 20:
                raise CommandError(replies.SYNTAX_ERROR)
            size = int(value)
        elif key == "BODY":  # rfc6152:3, rfc3030:3
            kinds = {"7BIT": BodyType.SEVEN_BIT, "8BITMIME": BodyType.EIGHT_BIT}
            kinds["BINARYMIME"] = BodyType.BINARY
            if value is None or value.upper() not in kinds:
                raise CommandError(replies.SYNTAX_ERROR)
            body = kinds[value.upper()]
        elif key == "RET":  # rfc3461:4.3
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise CommandError(replies.SYNTAX_ERROR)
            ret = "FULL" if value.upper() == "FULL" else "HDRS"
        elif key == "ENVID":  # rfc3461:4.4
            envid = _xtext(value, limits.ENVID_MAX)
        elif key == "AUTH":  # rfc4954:5 accepted; we never trust a client's AUTH= claim
            _xtext(value, limits.PATH_MAX + 2)
        else:
            raise CommandError(replies.UNKNOWN_PARAM)
    return Mail(address, size, body, smtputf8, ret, envid)


_NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY", "NEVER")


def _rcpt(rest: str, utf8: bool) -> Rcpt:
    path, ptext = _split_path(rest, "TO:")
    # rfc5321:4.1.1.3 "Postmaster" without a domain must be accepted.
    address = "postmaster" if path.lower() == "postmaster" else parse_mailbox(path, utf8)
    notify: set[Notify] = set()
    orcpt: str | None = None
    for key, value in _params(ptext).items():
        if key == "NOTIFY":  # rfc3461:4.1
            if value is None:
                raise CommandError(replies.SYNTAX_ERROR)
            for item in value.upper().split(","):
                if item == "SUCCESS":
                    notify.add("SUCCESS")
                elif item == "FAILURE":
                    notify.add("FAILURE")
                elif item == "DELAY":
                    notify.add("DELAY")
                elif item == "NEVER":
                    notify.add("NEVER")
                else:
                    raise CommandError(replies.SYNTAX_ERROR)
            if "NEVER" in notify and len(notify) > 1:
                raise CommandError(replies.SYNTAX_ERROR)
        elif key == "ORCPT":  # rfc3461:4.2 addr-type ";" xtext
            if value is None or ";" not in value:
                raise CommandError(replies.SYNTAX_ERROR)
            addr_type, _, xtext = value.partition(";")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*", addr_type):
                raise CommandError(replies.SYNTAX_ERROR)
            if addr_type.upper() == "UTF-8" and utf8:  # rfc6533:3 utf-8-addr-xtext
                if len(value) > limits.ORCPT_MAX:
                    raise CommandError(replies.SYNTAX_ERROR)
            else:
                _xtext(xtext, limits.ORCPT_MAX)
            orcpt = value
        else:
            raise CommandError(replies.UNKNOWN_PARAM)
    return Rcpt(address, frozenset(notify), orcpt)


def _no_args(rest: str, command: Command) -> Command:
    if rest.strip(" "):
        raise CommandError(replies.SYNTAX_ERROR)
    return command


def parse_command(line: bytes, utf8: bool = False) -> Command:
    """Parse a command line without its CRLF. ``utf8``: the transaction declared SMTPUTF8,
    so RCPT addresses may be UTF-8 (MAIL decides for itself from its own parameter)."""
    if b"\0" in line:
        raise CommandError(replies.NUL_IN_COMMAND)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(replies.NON_ASCII_COMMAND) from None
    verb, _, rest = text.partition(" ")
    verb = verb.upper()
    if not verb.isascii():
        raise CommandError(replies.UNKNOWN_COMMAND)
    if verb not in ("MAIL", "RCPT") and not text.isascii():
        raise CommandError(replies.NON_ASCII_COMMAND)
    if verb in ("EHLO", "HELO"):
        domain = rest.strip(" ")
        if not domain or " " in domain:
            raise CommandError(replies.SYNTAX_ERROR)
        return Helo(domain, verb == "EHLO")
    if verb == "MAIL":
        return _mail(rest)
    if verb == "RCPT":
        return _rcpt(rest, utf8)
    if verb == "DATA":
        return _no_args(rest, Data())
    if verb == "BDAT":  # rfc3030:3 "BDAT" SP chunk-size [ SP end-marker ]
        words = rest.split(" ")
        if not 1 <= len(words) <= 2 or not words[0].isdigit():
            raise CommandError(replies.SYNTAX_ERROR)
        if len(words[0]) > limits.BDAT_SIZE_DIGITS_MAX:
            raise CommandError(replies.SYNTAX_ERROR)
        if len(words) == 2 and words[1].upper() != "LAST":
            raise CommandError(replies.SYNTAX_ERROR)
        return Bdat(int(words[0]), len(words) == 2)
    if verb == "RSET":
        return _no_args(rest, Rset())
    if verb == "NOOP":  # rfc5321:4.1.1.9 a parameter is allowed and ignored
        return Noop()
    if verb == "QUIT":
        return _no_args(rest, Quit())
    if verb == "VRFY":
        if not rest.strip(" "):
            raise CommandError(replies.SYNTAX_ERROR)
        return Vrfy(rest.strip(" "))
    if verb == "EXPN":  # no list expansion: that would leak alias members
        raise CommandError(replies.EXPN_REFUSED)
    if verb == "HELP":
        return Help()
    if verb == "STARTTLS":
        return _no_args(rest, StartTLS())
    if verb == "AUTH":
        words = rest.split(" ")
        if not 1 <= len(words) <= 2 or not words[0]:
            raise CommandError(replies.SYNTAX_ERROR)
        initial = words[1].encode("ascii") if len(words) == 2 else None
        return Auth(words[0].upper(), initial)
    raise CommandError(replies.UNKNOWN_COMMAND)
