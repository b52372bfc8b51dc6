"""Fixtures for IMAP tests: a real server with an account, and logged-in imaplib clients."""

from __future__ import annotations

import imaplib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import MerpatiServer

USER = "alice@example.org"
PASSWORD = "alice-password-1"


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    """One server per test module (start-up costs ~1 s); each test uses its own folders."""
    base = tmp_path_factory.mktemp("imapsrv")
    srv = MerpatiServer(base, listeners=("imap", "imaps"))
    srv.start()
    srv.add_user(USER, PASSWORD)
    srv.add_user("bob@example.org", PASSWORD)
    yield srv
    srv.stop()


@pytest.fixture
def connect(imap_server: MerpatiServer) -> Iterator[Callable[..., imaplib.IMAP4]]:
    """``connect(login=True, user=USER)``: an IMAP4_SSL client on the imaps port."""
    made: list[imaplib.IMAP4] = []

    def make(login: bool = True, user: str = USER) -> imaplib.IMAP4:
        ctx = MerpatiServer.client_tls_context()
        host, port = imap_server.address("imaps")
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=10)
        made.append(m)
        if login:
            m.login(user, PASSWORD)
        return m

    yield make
    for m in made:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
