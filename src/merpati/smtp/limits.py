"""Named protocol limits of the SMTP core, each with the RFC section it comes from.

Operator-tunable limits (message size, recipients, timeouts, error count) live in
``merpati.config.LimitsConfig`` and are passed in; the constants here are fixed by the
standards. Every limit is enforced at the framing layer before the bytes are kept.
"""

from __future__ import annotations

# rfc5321:4.5.3.1.4 a command line is at most 512 octets including the CRLF.
COMMAND_LINE_MAX = 512
# rfc1869:4.1.2 / rfc3461:5 ESMTP parameters (ORCPT, ENVID) may lengthen MAIL and RCPT; we
# allow this much in total for those two commands.
MAIL_RCPT_LINE_MAX = 2048
# rfc4954:4 the AUTH command and SASL responses may be up to 12288 octets including CRLF.
AUTH_LINE_MAX = 12288
# The framing layer never holds more than this of an unterminated line; longer lines are
# drained to their CRLF and refused once.
FRAMING_LINE_MAX = AUTH_LINE_MAX
# rfc5321:4.5.3.1.6 a text line (in DATA) is at most 1000 octets including the CRLF.
TEXT_LINE_MAX = 1000
# rfc5321:6.3 a message with more than this many Received: fields is a loop (we count them
# when the message arrives; "over 50" is refused with 554 5.4.6).
MAX_RECEIVED_HEADERS = 50
# rfc5321:4.5.3.1.3 a path is at most 256 octets; rfc5321:4.5.3.1.1 local part 64,
# rfc5321:4.5.3.1.2 domain 255.
PATH_MAX = 256
LOCAL_PART_MAX = 64
DOMAIN_MAX = 255
# rfc3461:4.4 ENVID is at most 100 characters; rfc3461:4.2 ORCPT at most 500.
ENVID_MAX = 100
ORCPT_MAX = 500
# rfc3030:2 a BDAT chunk size is a decimal number; we refuse absurd ones before reading them.
BDAT_SIZE_DIGITS_MAX = 18
# NOOP, RSET, VRFY and HELP cost us work and move no mail; a session may send this many
# (Postfix's smtpd_junk_command_limit has the same default), then gets 421 4.7.0.
JUNK_COMMANDS_MAX = 100
