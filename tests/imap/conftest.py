"""Fixtures for IMAP tests: real servers shared by the whole IMAP test session (a start costs
a second or more), each test working in its own folders or accounts."""

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
LIMITS = (
    "[limits]\nimap_literal_size = 1000\nimap_line_length = 500\nbad_commands = 3\n"
    "imap_preauth_timeout = 1\nimap_idle_timeout = 2\n"
)


def _server(
    factory: pytest.TempPathFactory, users: tuple[str, ...], **kwargs: object
) -> Iterator[MerpatiServer]:
    srv = MerpatiServer(factory.mktemp("imapsrv"), **kwargs)  # type: ignore[arg-type]
    srv.start()
    try:
        srv.cli("domain", "add", "example.org")
        for user in users:
            srv.cli("user", "add", user, "--password-stdin", input=PASSWORD + "\n")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    """Default limits, TLS required for login: the imap and imaps listeners."""
    yield from _server(tmp_path_factory, (USER, "bob@example.org"), listeners=("imap", "imaps"))


@pytest.fixture(scope="session")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    """Tiny limits and timeouts (see LIMITS), plaintext login allowed."""
    yield from _server(
        tmp_path_factory,
        (USER,),
        extra_toml=LIMITS,
        listeners=("imap", "imaps"),
        allow_plaintext_auth=True,
    )


@pytest.fixture(scope="session")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MerpatiServer]:
    """SMTP submission, IMAP, POP3 and HTTP with plaintext login (mutt, cross-protocol)."""
    yield from _server(
        tmp_path_factory,
        (USER, "bob@example.org", "mutt@example.org"),
        listeners=("submission", "imap", "pop3", "http"),
        allow_plaintext_auth=True,
    )


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
