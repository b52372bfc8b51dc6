"""APPEND (rfc9051:6.3.12) with flags, internal date, literal8 (rfc3516:4.4), APPENDUID
(rfc4315:3) and the size limit advertised as APPENDLIMIT (rfc7889; the framer refused larger
literals before reading them). The message goes through the mail store's durable append: the
tagged OK is sent only after it returned.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.responses import Result, no, ok

if TYPE_CHECKING:
    from merpati.imap.session import Session

_BARE_LF = re.compile(rb"(?<!\r)\n")


async def append(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Append) and s.mailbox is not None
    name = s.decode_name(cmd.mailbox)
    data = cmd.data
    if not data:
        raise no("Empty message", b"CANNOT")
    if b"\n" in data and _BARE_LF.search(data):
        # Stored messages have CRLF line ends (RFC822.SIZE and offsets count them).
        data = _BARE_LF.sub(b"\r\n", data)
    when, tz = cmd.date if cmd.date is not None else (None, None)
    result = await s.mailbox.append(name, data, cmd.flags, when, tz)
    s.log("imap.append", account=s.account, size=len(data))
    return ok("APPEND completed", b"APPENDUID %d %d" % (result.uidvalidity, result.uid))
