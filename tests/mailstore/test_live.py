"""The store inside a real ``merpati serve``: mail accepted over SMTP lands in the Maildir, and
``merpati backup`` taken while mail keeps arriving restores to a consistent store."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path

from harness import eventually
from merpati.mailstore.embedded import EmbeddedMailStore
from merpati.mailstore.embedded.layout import account_dir

ALICE = "alice@example.org"


def _send(host: str, port: int, first: int, count: int, accepted: list[int]) -> None:
    with smtplib.SMTP(host, port, timeout=20) as c:
        for n in range(first, first + count):
            body = b"Subject: live %d\r\nX-N: %d\r\n\r\n" % (n, n) + b"line\r\n" * (n % 50 + 1)
            c.sendmail("s@remote.example", [ALICE], body)
            accepted.append(n)


async def _numbers(data_dir: Path) -> set[int]:
    store = EmbeddedMailStore(data_dir)
    try:
        box = store.mailbox(ALICE)
        found = set()
        for m in await box.messages("INBOX"):
            data = await box.read("INBOX", m.uid)
            assert len(data) == m.size
            n = int(data.split(b"X-N: ", 1)[1].split(b"\r\n", 1)[0])
            assert data.endswith(b"line\r\n" * (n % 50 + 1))  # complete
            found.add(n)
        return found
    finally:
        await store.close()


def test_backup_while_mail_arrives_and_restore(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server.add_user(ALICE)
    before: list[int] = []
    _send(server.host, server.ports["smtp"], 0, 10, before)
    inbox = account_dir(Path(server.data_dir) / "mail", ALICE)
    eventually(lambda: len(list((inbox / "new").iterdir())) == 10)  # Maildir, unflagged: new/

    during: list[int] = []
    sender = threading.Thread(
        target=_send, args=(server.host, server.ports["smtp"], 100, 40, during)
    )
    sender.start()
    result = server.cli("backup", str(tmp_path / "backup"))
    sender.join(timeout=60)
    assert "backed up" in result.stdout
    exported = server.cli("export", ALICE, str(tmp_path / "export"))
    assert "exported" in exported.stdout
    server.stop()

    restored = tmp_path / "restored"
    config = tmp_path / "restored.toml"
    config.write_text(f'data_dir = "{restored}"\n')
    from merpati.cli.main import main

    assert main(["--config", str(config), "restore", str(tmp_path / "backup")]) == 0
    found = asyncio.run(_numbers(restored))
    assert set(before) <= found  # everything accepted before the backup began
    assert found <= set(before) | set(during)
    assert asyncio.run(_numbers(Path(server.data_dir))) == set(before) | set(during)
