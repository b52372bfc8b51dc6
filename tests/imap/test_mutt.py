"""mutt (Debian package) reading, moving and flagging mail over IMAP, driven in batch mode.

mutt needs a terminal, so it runs on a pseudo-terminal with a ``push`` macro that tags, saves
to another folder, syncs (expunging the originals), flags the remaining message and quits.
"""

from __future__ import annotations

import imaplib
import os
import pty
import select
import shutil
import time
from pathlib import Path

import pytest

from conftest import PASSWORD
from harness import MerpatiServer

pytestmark = pytest.mark.interop
USER = "mutt@example.org"


def _run_on_pty(cmd: list[str], timeout: float) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec mutt with a terminal type it knows
        os.environ["TERM"] = "xterm"
        os.execvp(cmd[0], cmd)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif os.waitpid(pid, os.WNOHANG)[0]:
                return out
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)
    return out


def test_mutt_reads_moves_and_flags(plain_server: MerpatiServer, tmp_path: Path) -> None:
    if shutil.which("mutt") is None:
        pytest.skip("mutt not installed (Debian package mutt)")
    srv = plain_server
    host, port = srv.address("imap")
    m = imaplib.IMAP4(host, port, timeout=10)
    m.login(USER, PASSWORD)
    for i in range(3):
        m.append("INBOX", "", None, b"From: a@example.com\r\nSubject: Move me %d\r\n\r\nx\r\n" % i)
    m.append("INBOX", "", None, b"From: a@example.com\r\nSubject: Keep this\r\n\r\nx\r\n")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user="{USER}"\nset imap_pass="{PASSWORD}"\n'
        f'set folder="imap://{host}:{port}/"\nset spoolfile="+INBOX"\n'
        'unset ssl_starttls\nunset ssl_force_tls\nset header_cache=""\n'
        "set confirmappend=no\nset confirmcreate=no\nset delete=yes\nset quit=yes\n"
        "set move=no\nset mark_old=no\nset timeout=5\n"
    )
    macro = (
        "<tag-pattern>~s Move<enter><tag-prefix><save-message>=Archive<enter>"
        "<sync-mailbox><flag-message><sync-mailbox><quit>"
    )
    out = _run_on_pty(["mutt", "-n", "-F", str(rc), "-e", f'push "{macro}"'], timeout=30)
    assert b"Keep this" in out  # mutt read the headers and showed the index
    m.select("INBOX")
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and len(data) == 2, data
    assert data[0][1] == b"Subject: Keep this\r\n\r\n"
    assert b"\\Flagged" in data[0][0]
    m.select("Archive")
    assert m.search(None, "SUBJECT", '"Move me"') == ("OK", [b"1 2 3"])
    m.logout()
