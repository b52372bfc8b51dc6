"""Interop: fetchmail (Debian package) fetching over POP3S and over POP3 + STLS into an mbox."""

from __future__ import annotations

import getpass
import mailbox
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pop3_util import PASSWORD, InProcessServer, make_message

pytestmark = pytest.mark.interop

FETCHMAIL = shutil.which("fetchmail")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    if FETCHMAIL is None:
        pytest.skip("fetchmail not installed (Debian package fetchmail; `make test` installs it)")
    server = InProcessServer(tmp_path_factory.mktemp("fetchmail"), plaintext=False)
    yield server
    server.stop()


def run_fetchmail(
    srv: InProcessServer, home: Path, user: str, implicit_tls: bool, keep: bool
) -> tuple[int, str]:
    home.mkdir(exist_ok=True)
    mbox = home / "inbox.mbox"
    mda = home / "mda.sh"
    # An MDA appending each message to an mbox with its "From " separator line.
    mda.write_text(
        "#!/bin/sh\n"
        f"{{ echo 'From fetchmail@localhost Thu Jan  1 00:00:00 1970'; cat; echo; }} >> '{mbox}'\n"
    )
    mda.chmod(0o700)
    port = srv.ports["pop3s" if implicit_tls else "pop3"]
    rc = home / "fetchmailrc"
    rc.write_text(
        f"set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {port} uidl\n"
        f'  user "{user}" there with password "{PASSWORD}" is "{getpass.getuser()}" here\n'
        f"  {'ssl ' if implicit_tls else ''}sslproto 'TLS1.2+' no sslcertck\n"
        f"  {'keep' if keep else 'nokeep'}\n"
        f'  mda "{mda}"\n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    proc = subprocess.run(
        [
            FETCHMAIL or "fetchmail",
            "-f",
            str(rc),
            "--nodetach",
            "--nosyslog",
            "--idfile",
            str(home / "fetchids"),
            "--pidfile",
            str(home / "fetchmail.pid"),
            "-v",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def fetched(home: Path) -> list[mailbox.mboxMessage]:
    path = home / "inbox.mbox"
    return list(mailbox.mbox(str(path))) if path.exists() else []


def test_fetchmail_pop3s_keep_then_delete(srv: InProcessServer, tmp_path: Path) -> None:
    user = "fm-implicit@example.org"
    srv.add_user(user)
    sent = [make_message(i, size=2000 * i, subject=f"fetch {i}") for i in range(1, 4)]
    for m in sent:
        srv.append(user, m)
    home = tmp_path / "home"
    code, log = run_fetchmail(srv, home, user, implicit_tls=True, keep=True)
    assert code == 0, log
    got = fetched(home)
    assert sorted(m["Subject"] for m in got) == ["fetch 1", "fetch 2", "fetch 3"], log
    raw_mbox = (home / "inbox.mbox").read_bytes()
    for raw in sent:
        # 8-bit bodies arrive byte for byte (fetchmail hands the MDA LF line ends).
        body = raw.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert b"\n\n" + body in raw_mbox
    assert len(srv.inbox(user)) == 3, "keep leaves mail on the server"
    # Second run with the same id file: nothing new is fetched (UIDL), still all kept.
    code, log = run_fetchmail(srv, home, user, implicit_tls=True, keep=True)
    assert code == 1, log  # 1: no mail
    assert len(fetched(home)) == 3
    # Without keep, fetchmail deletes what it fetched.
    (home / "fetchids").unlink()
    (home / "inbox.mbox").unlink()
    code, log = run_fetchmail(srv, home, user, implicit_tls=True, keep=False)
    assert code == 0, log
    assert len(fetched(home)) == 3
    assert srv.inbox(user) == []


def test_fetchmail_stls(srv: InProcessServer, tmp_path: Path) -> None:
    user = "fm-stls@example.org"
    srv.add_user(user)
    for i in range(1, 3):
        srv.append(user, make_message(i, subject=f"stls {i}"))
    home = tmp_path / "home"
    code, log = run_fetchmail(srv, home, user, implicit_tls=False, keep=False)
    assert code == 0, log
    assert "STLS" in log
    assert sorted(m["Subject"] for m in fetched(home)) == ["stls 1", "stls 2"]
    assert srv.inbox(user) == []
