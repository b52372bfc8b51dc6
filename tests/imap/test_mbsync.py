"""mbsync (Debian package isync) synchronising a Merpati account with a local Maildir over
IMAPS, trusting the server's self-signed certificate through ``CertificateFile``.

Both directions: messages and flags down, then a local flag change, a new local message and a
local deletion up, then a server-side flag and deletion down again.
"""

from __future__ import annotations

import imaplib
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PASSWORD
from harness import MerpatiServer

pytestmark = pytest.mark.interop
USER = "mbsync@example.org"


def _msg(subject: str) -> bytes:
    return (
        b"From: a@example.com\r\nTo: mbsync@example.org\r\nSubject: "
        + subject.encode()
        + b"\r\nMessage-ID: <"
        + subject.replace(" ", ".").encode()
        + b"@example.com>\r\n\r\nbody of "
        + subject.encode()
        + b"\r\n"
    )


def _mbsync(rc: Path) -> str:
    proc = subprocess.run(
        ["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "warning" not in out.lower() and "error" not in out.lower(), out
    return out


def _local(maildir: Path) -> dict[str, str]:
    """Subject -> Maildir info flags ("FS") of every message in a local folder."""
    out: dict[str, str] = {}
    for sub in ("cur", "new"):
        for path in (maildir / sub).iterdir():
            subject = next(
                line[9:].strip()
                for line in path.read_text().splitlines()
                if line.startswith("Subject: ")
            )
            out[subject] = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
    return out


def _server(m: imaplib.IMAP4, folder: str = "INBOX") -> dict[str, bytes]:
    """Subject -> FLAGS of every message in a server folder."""
    typ, _ = m.select(folder)
    assert typ == "OK"
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out: dict[str, bytes] = {}
    if data == [None]:
        return out
    for item in data:
        if isinstance(item, tuple):
            subject = item[1].decode().strip()[9:]
            out[subject] = item[0].split(b"FLAGS (", 1)[1].split(b")", 1)[0]
    return out


def test_mbsync_two_way(imap_server: MerpatiServer, tmp_path: Path) -> None:
    if shutil.which("mbsync") is None:
        pytest.skip("mbsync not installed (Debian package isync; `make test` installs it as root)")
    srv = imap_server
    srv.add_user(USER, PASSWORD)
    host, port = srv.address("imaps")
    m = imaplib.IMAP4_SSL(host, port, ssl_context=MerpatiServer.client_tls_context(), timeout=10)
    m.login(USER, PASSWORD)
    for subject, flags in (("one", ""), ("two", "(\\Flagged)"), ("three", "(\\Seen)")):
        assert m.append("INBOX", flags, None, _msg(subject))[0] == "OK"
    assert m.append("Archive", "", None, _msg("archived"))[0] == "OK"

    mail = tmp_path / "mail"
    mail.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount merpati\nHost {host}\nPort {port}\nUser {USER}\nPass {PASSWORD}\n"
        f"SSLType IMAPS\nCertificateFile {srv.data_dir / 'tls' / 'cert.pem'}\n"
        "AuthMechs LOGIN\nTimeout 20\n\n"
        "IMAPStore remote\nAccount merpati\n\n"
        f"MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Archive\n"
        "Create Both\nExpunge Both\nSyncState *\n"
    )

    # 1. down: every message with its flags
    _mbsync(rc)
    local = _local(mail / "INBOX")
    assert local == {"one": "", "two": "F", "three": "S"}
    assert _local(mail / "Archive") == {"archived": ""}

    # 2. up: mark "one" seen, add a message, delete "three"
    for sub in ("cur", "new"):
        for path in list((mail / "INBOX" / sub).iterdir()):
            text = path.read_text()
            if "Subject: one" in text:
                path.rename(mail / "INBOX" / "cur" / (path.name.split(":2,")[0] + ":2,S"))
            elif "Subject: three" in text:
                path.unlink()
    (mail / "INBOX" / "new" / "1700000000.local.host").write_bytes(_msg("written locally"))
    _mbsync(rc)
    remote = _server(m)
    assert set(remote) == {"one", "two", "written locally"}
    assert b"\\Seen" in remote["one"] and b"\\Flagged" in remote["two"]

    # 3. down again: a flag set and a message deleted on the server
    typ, data = m.search(None, "SUBJECT", '"written locally"')
    assert typ == "OK" and data[0]
    assert m.store(data[0].decode(), "+FLAGS", "(\\Answered)")[0] == "OK"
    typ, data = m.search(None, "SUBJECT", "two")
    assert m.store(data[0].decode(), "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert m.expunge()[0] == "OK"
    _mbsync(rc)
    local = _local(mail / "INBOX")
    assert set(local) == {"one", "written locally"}
    assert "R" in local["written locally"] and "S" in local["one"]
    # a second run with nothing to do changes nothing on either side
    _mbsync(rc)
    assert set(_server(m)) == {"one", "written locally"}
    assert set(_local(mail / "INBOX")) == {"one", "written locally"}
    m.logout()
