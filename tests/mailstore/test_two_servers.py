"""Two ``merpati serve`` processes on one data dir: mail delivered through both at once lands
once each with unique UIDs, and an IMAP client of one server sees (IDLE) what the other
delivered."""

from __future__ import annotations

import imaplib
import smtplib
import threading
import time
from collections.abc import Callable

import pytest

from harness import MerpatiServer, eventually

ALICE, PASSWORD = "alice@example.org", "two-servers-pw-1"
PER_SERVER = 15


def _send(srv: MerpatiServer, tag: str, errors: list[BaseException]) -> None:
    try:
        with smtplib.SMTP(*srv.address("smtp"), timeout=20) as c:
            for n in range(PER_SERVER):
                c.sendmail("s@remote.example", [ALICE], f"Subject: {tag} {n}\r\n\r\nx\r\n".encode())
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def _wait_for(m: imaplib.IMAP4, want: bytes, timeout: float) -> bytes:
    assert m.sock is not None
    m.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = m.readline()
        if want in line:
            return line
    raise AssertionError(f"no {want!r} within {timeout} s")


def test_two_servers_share_one_data_dir(server_factory: Callable[..., MerpatiServer]) -> None:
    pytest.importorskip("merpati.smtp.server", reason="needs the SMTP listeners")
    pytest.importorskip("merpati.imap.server", reason="needs the IMAP listeners")
    listeners = ("smtp", "imap", "http")
    one = server_factory(listeners=listeners, allow_plaintext_auth=True)
    one.add_user(ALICE, PASSWORD)
    two = server_factory(listeners=listeners, allow_plaintext_auth=True, start=False)
    two.config_path.write_text(
        two.config_path.read_text().replace(str(two.data_dir), str(one.data_dir))
    )
    two.data_dir = one.data_dir
    two.start()

    m = imaplib.IMAP4(*two.address("imap"), timeout=10)
    m.login(ALICE, PASSWORD)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    with smtplib.SMTP(*one.address("smtp"), timeout=10) as c:  # through the other process
        c.sendmail("s@remote.example", [ALICE], b"Subject: first\r\n\r\nx\r\n")
    assert _wait_for(m, b"EXISTS", 3.0) == b"* 1 EXISTS\r\n"
    m.send(b"DONE\r\n")
    _wait_for(m, tag, 5.0)

    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_send, args=(s, t, errors)) for s, t in ((one, "a"), (two, "b"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors

    def all_there() -> list[int]:
        typ, data = m.uid("SEARCH", "ALL")
        assert typ == "OK"
        uids = [int(u) for u in data[0].split()]
        return uids if len(uids) == 2 * PER_SERVER + 1 else []

    uids = eventually(all_there)
    assert uids == list(range(1, 2 * PER_SERVER + 2))  # unique, none lost, none reused
    typ, data = m.fetch(f"1:{len(uids)}", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    subjects = {part[1].strip() for part in data if isinstance(part, tuple)}
    assert len(subjects) == 2 * PER_SERVER + 1
    m.logout()
