"""IDLE sees what other protocols do: a delivery over SMTP submission and a POP3 deletion reach
an idling IMAP client within one second (issue 7, item 4)."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time
import urllib.request

import pytest

from conftest import PASSWORD, USER
from harness import MerpatiServer

OTHER = "bob@example.org"


def _wait_line(m: imaplib.IMAP4, want: bytes, timeout: float) -> tuple[bytes, float]:
    assert m.sock is not None
    m.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = m.readline()
        if want in line:
            return line, time.monotonic()
    raise AssertionError(f"no {want!r} within {timeout} s")


def test_idle_sees_smtp_delivery_and_pop3_delete(plain_server: MerpatiServer) -> None:
    pytest.importorskip("merpati.smtp.server", reason="needs the SMTP listeners")
    pytest.importorskip("merpati.pop3.server", reason="needs the POP3 listeners")
    srv = plain_server
    m = imaplib.IMAP4(*srv.address("imap"), timeout=10)
    m.login(USER, PASSWORD)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")

    with smtplib.SMTP(*srv.address("submission"), timeout=10) as s:
        s.login(OTHER, PASSWORD)
        sent = time.monotonic()
        s.sendmail(OTHER, [USER], b"From: bob@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    line, got = _wait_line(m, b"EXISTS", 5)
    assert line == b"* 1 EXISTS\r\n"
    assert got - sent < 1.0 + 0.5  # the 250 reply itself is part of the measured interval

    p = poplib.POP3(*srv.address("pop3"), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    p.dele(1)
    done = time.monotonic()
    p.quit()
    line, got = _wait_line(m, b"EXPUNGE", 5)
    assert line == b"* 1 EXPUNGE\r\n"
    assert got - done < 1.0 + 0.5
    m.send(b"DONE\r\n")
    _wait_line(m, tag + b" OK", 5)
    m.logout()
    host, port = srv.address("http")
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert re.search(r'merpati_imap_logins_total\{result="ok"\} [1-9]', metrics)
    assert re.search(r'merpati_imap_commands_total\{command="SELECT",status="OK"\} [1-9]', metrics)
