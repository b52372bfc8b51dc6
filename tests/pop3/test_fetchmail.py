"""Interop: fetchmail (Debian package) fetching from a real `merpati serve` over POP3S and over
POP3 + STLS into an mbox; the mail goes in through the server's SMTP listener."""

from __future__ import annotations

import getpass
import mailbox
import os
import poplib
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pop3_util import make_message

from harness import MerpatiServer, eventually

pytestmark = pytest.mark.interop

FETCHMAIL = shutil.which("fetchmail")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    if FETCHMAIL is None:
        pytest.skip("fetchmail not installed (Debian package fetchmail; `make test` installs it)")
    server = MerpatiServer(
        tmp_path_factory.mktemp("fetchmail"),
        listeners=("smtp", "pop3", "pop3s"),
        extra_toml='[limits]\nshutdown_grace = "1s"\n',
    )
    server.start()
    yield server
    server.stop()


def deliver(srv: MerpatiServer, rcpt: str, messages: list[bytes]) -> None:
    with smtplib.SMTP(*srv.address("smtp"), timeout=10) as smtp:
        for m in messages:
            smtp.sendmail("sender@example.net", [rcpt], m)


def inbox_count(srv: MerpatiServer, user: str, password: str) -> int:
    client = poplib.POP3_SSL(*srv.address("pop3s"), timeout=10, context=srv.client_tls_context())
    client.user(user)
    client.pass_(password)
    count = client.stat()[0]
    client.quit()
    return count


def run_fetchmail(
    srv: MerpatiServer, home: Path, user: str, password: str, implicit_tls: bool, keep: bool
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
        f'  user "{user}" there with password "{password}" is "{getpass.getuser()}" here\n'
        # sslproto without ssl: fetchmail insists on STLS. No certificate check: self-signed.
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


def test_fetchmail_pop3s_keep_then_delete(srv: MerpatiServer, tmp_path: Path) -> None:
    user = "fm-implicit@example.org"
    password = srv.add_user(user)
    sent = [make_message(i, size=2000 * i, subject=f"fetch {i}") for i in range(1, 4)]
    deliver(srv, user, sent)
    eventually(lambda: inbox_count(srv, user, password) == 3)  # delivered after the 250
    home = tmp_path / "home"
    code, log = run_fetchmail(srv, home, user, password, implicit_tls=True, keep=True)
    assert code == 0, log
    got = fetched(home)
    assert sorted(m["Subject"] for m in got) == ["fetch 1", "fetch 2", "fetch 3"], log
    raw_mbox = (home / "inbox.mbox").read_bytes()
    for raw in sent:
        # 8-bit bodies arrive byte for byte (fetchmail hands the MDA LF line ends).
        body = raw.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        assert b"\n\n" + body in raw_mbox
    assert inbox_count(srv, user, password) == 3, "keep leaves mail on the server"
    # Second run with the same id file: nothing new is fetched (UIDL), still all kept.
    code, log = run_fetchmail(srv, home, user, password, implicit_tls=True, keep=True)
    assert code == 1, log  # 1: no mail
    assert len(fetched(home)) == 3
    # Without keep, fetchmail deletes what it fetched.
    (home / "fetchids").unlink()
    (home / "inbox.mbox").unlink()
    code, log = run_fetchmail(srv, home, user, password, implicit_tls=True, keep=False)
    assert code == 0, log
    assert len(fetched(home)) == 3
    assert inbox_count(srv, user, password) == 0


def test_fetchmail_stls(srv: MerpatiServer, tmp_path: Path) -> None:
    user = "fm-stls@example.org"
    password = srv.add_user(user)
    deliver(srv, user, [make_message(i, subject=f"stls {i}") for i in range(1, 3)])
    eventually(lambda: inbox_count(srv, user, password) == 2)
    home = tmp_path / "home"
    code, log = run_fetchmail(srv, home, user, password, implicit_tls=False, keep=False)
    assert code == 0, log
    assert "POP3> STLS" in log
    assert sorted(m["Subject"] for m in fetched(home)) == ["stls 1", "stls 2"]
    assert inbox_count(srv, user, password) == 0
