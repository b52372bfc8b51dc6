"""Commands valid in any state or needing nothing but the session: CAPABILITY, NOOP/CHECK,
LOGOUT, ID (rfc2971), ENABLE (rfc5161), NAMESPACE (rfc2342), IDLE (rfc2177).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap.responses import Result, ok

if TYPE_CHECKING:
    from merpati.imap.session import Session

# rfc5161 / rfc9051:6.3.1 what ENABLE can switch on.
ENABLEABLE = {
    "IMAP4REV2": "IMAP4rev2",
    "CONDSTORE": "CONDSTORE",
    "QRESYNC": "QRESYNC",
    "UTF8=ACCEPT": "UTF8=ACCEPT",
}


async def capability(s: Session, cmd: c.Command) -> Result:
    s.write(b"* CAPABILITY " + " ".join(s.capabilities()).encode() + b"\r\n")
    return ok("CAPABILITY completed")


async def noop(s: Session, cmd: c.Command) -> Result:
    return ok(f"{cmd.name} completed")


async def logout(s: Session, cmd: c.Command) -> Result:
    from merpati.imap.session import State

    s.write(b"* BYE Logging out\r\n")
    s.state = State.LOGOUT
    return ok("LOGOUT completed")


async def id_(s: Session, cmd: c.Command) -> Result:
    s.write(b'* ID ("name" "Merpati" "vendor" "Merpati")\r\n')
    return ok("ID completed")


async def enable(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Enable)
    done: list[str] = []
    for cap in cmd.capabilities:
        name = ENABLEABLE.get(cap)
        if name is None:
            continue  # rfc5161:3.1 unknown capabilities are ignored
        if name == "IMAP4rev2" and not s.rev2:
            s.rev2 = True
        elif name == "CONDSTORE" and not s.condstore:
            s.condstore = True
        elif name == "QRESYNC" and not s.qresync:
            s.qresync = s.condstore = True  # rfc7162:3.2.3 QRESYNC implies CONDSTORE
        elif name == "UTF8=ACCEPT" and not s.utf8:
            s.utf8 = True
        else:
            continue
        done.append(name)
    s.write(b"* ENABLED" + b"".join(b" " + d.encode() for d in done) + b"\r\n")
    return ok("ENABLE completed")


async def namespace(s: Session, cmd: c.Command) -> Result:
    s.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return ok("NAMESPACE completed")


async def idle(s: Session, cmd: c.Command) -> Result | None:
    s.idle_tag = cmd.tag
    await s.announce()
    s.write(b"+ idling\r\n")
    return None
