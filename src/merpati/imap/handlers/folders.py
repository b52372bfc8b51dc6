"""Mailbox-level commands: CREATE (rfc6154:3 USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE,
LIST (rfc5258 LIST-EXTENDED, rfc5819 LIST-STATUS, rfc6154 SPECIAL-USE), LSUB, STATUS (rfc8438
SIZE, rfc7162 HIGHESTMODSEQ) and read-only QUOTA (rfc9208 GETQUOTA, GETQUOTAROOT).

The hierarchy separator is "/" and there is one personal namespace with an empty prefix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from merpati.imap import commands as c
from merpati.imap import wire
from merpati.imap.responses import Result, bad, no, ok
from merpati.mailstore.api import SEPARATOR, FolderInfo

if TYPE_CHECKING:
    from merpati.imap.session import Session

SPECIAL_USE = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


async def create(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.MailboxCommand) and s.mailbox is not None
    name = s.decode_name(cmd.mailbox).rstrip(SEPARATOR)  # rfc9051:6.3.4 trailing separator
    if not name:
        raise no("Mailbox name is empty", b"CANNOT")
    if name == "INBOX":
        raise no("INBOX always exists", b"ALREADYEXISTS")
    special: str | None = None
    if cmd.special_use:
        if len(cmd.special_use) > 1 or cmd.special_use[0] not in SPECIAL_USE:
            raise no("Unsupported special-use attribute", b"USEATTR")
        special = cmd.special_use[0]
    await s.mailbox.create_folder(name, special)
    return ok("CREATE completed")


async def delete(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.MailboxCommand) and s.mailbox is not None
    name = s.decode_name(cmd.mailbox)
    if name == "INBOX":
        raise no("INBOX cannot be deleted", b"CANNOT")
    await s.mailbox.delete_folder(name)
    return ok("DELETE completed")


async def rename(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Rename) and s.mailbox is not None
    # rfc9051:6.3.6 renaming INBOX moves its messages to the new name and leaves INBOX empty;
    # the store implements that.
    await s.mailbox.rename_folder(s.decode_name(cmd.old), s.decode_name(cmd.new))
    return ok("RENAME completed")


async def subscribe(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.MailboxCommand) and s.mailbox is not None
    await s.mailbox.subscribe(s.decode_name(cmd.mailbox), cmd.name == "SUBSCRIBE")
    return ok(f"{cmd.name} completed")


def _pattern(s: Session, reference: bytes, pattern: bytes) -> re.Pattern[str]:
    text = s.decode_name(reference + pattern) if (reference or pattern) else ""
    out = []
    for ch in text:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    expr = "".join(out)
    # "INBOX" is case-insensitive, also as the first level of a pattern (rfc9051:5.1).
    head = text.split(SEPARATOR, 1)[0]
    if head.upper() == "INBOX" and head != "INBOX":
        expr = "INBOX" + expr[len(head) :]
    return re.compile(expr, re.DOTALL)


def _ancestors(name: str) -> list[str]:
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


async def list_(s: Session, cmd: c.Command) -> Result:
    """LIST and LSUB. Selection (rfc5258:3): a name is returned when it matches a pattern and
    the selection criteria (SUBSCRIBED, SPECIAL-USE; none: every existing name and hierarchy
    level), or with RECURSIVEMATCH when a descendant that the patterns do not match meets the
    criteria; such names carry ``("CHILDINFO" (criteria))`` (rfc5258:3.5). Names that are no
    mailbox (hierarchy levels, subscribed names of deleted folders) are ``\\NonExistent``
    (rfc5258:3.4, which implies ``\\Noselect``) for LIST-EXTENDED and IMAP4rev2 clients and
    ``\\Noselect`` for a plain IMAP4rev1 LIST or LSUB."""
    assert isinstance(cmd, c.ListCommand) and s.mailbox is not None
    lsub = cmd.name == "LSUB"
    if cmd.patterns == (b"",) and not cmd.select_opts:
        # rfc9051:6.3.9 the hierarchy delimiter and root of the reference
        s.write(b'* %s (\\Noselect) "/" ""\r\n' % cmd.name.encode())
        return ok(f"{cmd.name} completed")
    for opt in cmd.select_opts:
        if opt not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
            raise bad("Unknown LIST selection option")
    criteria = tuple(o for o in cmd.select_opts if o in ("SUBSCRIBED", "SPECIAL-USE"))
    recursive = "RECURSIVEMATCH" in cmd.select_opts
    if recursive and not criteria:
        raise bad("RECURSIVEMATCH needs another selection option")  # rfc5258:3
    for opt in cmd.return_opts:
        if opt not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"):
            raise bad("Unknown LIST return option")
    if lsub:
        criteria = ("SUBSCRIBED",)
    folders = {f.name: f for f in await s.mailbox.folders()}
    show_subscribed = not lsub and (
        "SUBSCRIBED" in cmd.select_opts or "SUBSCRIBED" in cmd.return_opts
    )
    subscribed: set[str] = set()
    if "SUBSCRIBED" in criteria or show_subscribed:
        subscribed = set(await s.mailbox.subscriptions())
    names = set(folders)
    for name in folders:
        names.update(_ancestors(name))
    with_children = {a for n in folders for a in _ancestors(n)}

    def meets(name: str) -> bool:
        if not criteria:
            return name in names
        if "SUBSCRIBED" in criteria and name not in subscribed:
            return False
        if "SPECIAL-USE" in criteria:
            info = folders.get(name)
            return info is not None and info.special_use is not None
        return True

    matching = {n for n in names | subscribed if meets(n)}
    patterns = [_pattern(s, cmd.reference, p) for p in cmd.patterns]

    def matched(name: str) -> bool:
        return any(p.fullmatch(name) for p in patterns)

    # rfc5258:3.5 names with a descendant that meets the criteria (for CHILDINFO), and the
    # rfc5258:3 rule 2 names: such a descendant is not itself matched by the patterns.
    # rfc3501:6.3.9 LSUB works the same way: "%" returns the unsubscribed parent \\Noselect.
    childinfo: set[str] = set()
    by_descendant: set[str] = set()
    if recursive or lsub:
        for name in matching:
            hidden = not matched(name)
            for parent in _ancestors(name):
                childinfo.add(parent)
                if hidden:
                    by_descendant.add(parent)
    extended = (cmd.extended or s.rev2) and not lsub
    info_text = b" (" + b" ".join(b'"' + o.encode() + b'"' for o in criteria) + b")"
    for name in sorted(matching | by_descendant, key=lambda n: (n != "INBOX", n)):
        if not matched(name):
            continue
        info = folders.get(name)
        attrs: list[str] = []
        if info is None:
            attrs.append("\\NonExistent" if extended else "\\Noselect")
        elif lsub and name not in matching:
            attrs.append("\\Noselect")
        if name in with_children:
            attrs.append("\\HasChildren")
        elif info is not None:
            attrs.append("\\HasNoChildren")
        if info is not None and info.special_use:
            attrs.append(info.special_use)
        if show_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        encoded = wire.astring(s.encode_name(name), s.utf8 or s.rev2)
        line = b"* " + cmd.name.encode() + b" (" + " ".join(attrs).encode() + b') "/" ' + encoded
        if recursive and name in childinfo:
            line += b' ("CHILDINFO"' + info_text + b")"
        s.write(line + b"\r\n")
        if cmd.status_atts and info is not None:
            s.write(await _status_line(s, info, cmd.status_atts, encoded))
    return ok(f"{cmd.name} completed")


async def _status_line(s: Session, info: FolderInfo, atts: tuple[str, ...], name: bytes) -> bytes:
    values: list[bytes] = []
    for att in atts:
        if att == "MESSAGES":
            v = info.messages
        elif att == "RECENT":
            v = info.recent
        elif att == "UIDNEXT":
            v = info.uidnext
        elif att == "UIDVALIDITY":
            v = info.uidvalidity
        elif att == "UNSEEN":
            v = info.unseen
        elif att == "SIZE":
            v = info.size
        elif att == "HIGHESTMODSEQ":
            v = info.highestmodseq
        else:  # DELETED (rfc9051:6.3.11)
            assert s.mailbox is not None
            msgs = await s.mailbox.messages(info.name)
            v = sum(1 for m in msgs if "\\Deleted" in m.flags)
        values.append(att.encode() + b" %d" % v)
    return b"* STATUS " + name + b" (" + b" ".join(values) + b")\r\n"


async def status(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.Status) and s.mailbox is not None
    name = s.decode_name(cmd.mailbox)
    info = await s.mailbox.folder(name)
    if "HIGHESTMODSEQ" in cmd.atts:
        s.condstore = True  # rfc7162:3.1 using it enables CONDSTORE
    s.write(
        await _status_line(
            s, info, cmd.atts, wire.astring(s.encode_name(info.name), s.utf8 or s.rev2)
        )
    )
    return ok("STATUS completed")


def _quota_line(used: int, limit: int) -> bytes:
    # rfc9208:5.1 STORAGE is in units of 1024 octets
    return b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024)


async def getquotaroot(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.MailboxCommand) and s.mailbox is not None
    info = await s.mailbox.folder(s.decode_name(cmd.mailbox))
    used, limit = await s.mailbox.quota()
    name = wire.astring(s.encode_name(info.name), s.utf8 or s.rev2)
    if limit is None:
        s.write(b"* QUOTAROOT " + name + b"\r\n")
    else:
        s.write(b"* QUOTAROOT " + name + b' ""\r\n')
        s.write(_quota_line(used, limit))
    return ok("GETQUOTAROOT completed")


async def getquota(s: Session, cmd: c.Command) -> Result:
    assert isinstance(cmd, c.GetQuota) and s.mailbox is not None
    used, limit = await s.mailbox.quota()
    if cmd.root != b"" or limit is None:
        raise no("No such quota root", b"NONEXISTENT")
    s.write(_quota_line(used, limit))
    return ok("GETQUOTA completed")
