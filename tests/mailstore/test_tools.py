"""export/import (Maildir++ and mboxrd) and backup/restore round trips through the CLI:
1,000 messages byte for byte, with flags, keywords, folders and internal dates."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from merpati.accounts.store import AccountStore
from merpati.cli.main import main
from merpati.mailstore import mboxrd
from merpati.mailstore.embedded import EmbeddedMailStore

A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"
FOLDERS = {"INBOX": 700, "Archive": 200, "Projects/2024": 60, "Ünïcødé": 40}
FLAG_CHOICES = ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded", "Work"]

Snapshot = dict[str, list[tuple[bytes, frozenset[str], float]]]


def _message(rng: random.Random, n: int) -> bytes:
    body = b"".join(
        rng.choice([b"plain line\r\n", b"From the start\r\n", b">From quoted\r\n", b"\r\n"])
        for _ in range(rng.randint(1, 40))
    )
    return b"From: s%d@example.net\r\nSubject: n%d\r\n\r\n" % (n, n) + body


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    accounts = AccountStore.open(data)
    accounts.add_domain("example.org")
    for address in (A, B, C):
        accounts.add_account(address, "pw-" + address)
    accounts.close()
    config = tmp_path / "merpati.toml"
    config.write_text(f'data_dir = "{data}"\n')
    return data, config


async def _fill(data: Path) -> None:
    rng = random.Random(7)
    store = EmbeddedMailStore(data)
    box = store.mailbox(A)
    n = 0
    for folder, count in FOLDERS.items():
        if folder not in ("INBOX", "Archive"):
            await box.create_folder(folder)
        items = []
        for _ in range(count):
            flags = set(rng.sample(FLAG_CHOICES, rng.randint(0, 3)))
            items.append((_message(rng, n), flags, 1_600_000_000.0 + n * 61))
            n += 1
        await box.append_many(folder, items)
    await store.close()


async def _snapshot(data: Path, account: str) -> Snapshot:
    store = EmbeddedMailStore(data)
    box = store.mailbox(account)
    out: Snapshot = {}
    for info in await box.folders():
        msgs = await box.messages(info.name)
        if msgs or info.name in FOLDERS:
            out[info.name] = [
                (await box.read(info.name, m.uid), m.flags, m.internaldate) for m in msgs
            ]
    await store.close()
    return out


def test_export_import_and_backup_restore_round_trips(tmp_path: Path) -> None:
    data, config = _setup(tmp_path)
    asyncio.run(_fill(data))
    original = asyncio.run(_snapshot(data, A))
    assert sum(len(v) for v in original.values()) == 1000

    assert main(["--config", str(config), "export", A, str(tmp_path / "md")]) == 0
    assert (tmp_path / "md" / ".Projects.2024" / "cur").is_dir()
    assert (tmp_path / "md" / "dovecot-keywords").exists()
    assert main(["--config", str(config), "import", B, str(tmp_path / "md")]) == 0
    assert asyncio.run(_snapshot(data, B)) == original

    assert (
        main(["--config", str(config), "export", A, str(tmp_path / "mb"), "--format", "mbox"]) == 0
    )
    assert (tmp_path / "mb" / "Projects" / "2024.mbox").is_file()
    assert main(["--config", str(config), "import", C, str(tmp_path / "mb")]) == 0
    assert asyncio.run(_snapshot(data, C)) == original

    assert main(["--config", str(config), "backup", str(tmp_path / "bk")]) == 0
    restored = tmp_path / "restored"
    config2 = tmp_path / "restored.toml"
    config2.write_text(f'data_dir = "{restored}"\n')
    assert main(["--config", str(config2), "restore", str(tmp_path / "bk")]) == 0
    assert (restored / "accounts.db").exists()
    assert asyncio.run(_snapshot(restored, A)) == original
    assert asyncio.run(_snapshot(restored, C)) == original
    accounts = AccountStore.open(restored)
    assert accounts.get_account(B) is not None
    accounts.close()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, config = _setup(tmp_path)
    assert main(["--config", str(config), "export", "nobody@example.org", str(tmp_path / "x")]) == 1
    assert "no account nobody@example.org" in capsys.readouterr().err
    assert main(["--config", str(config), "import", A, str(tmp_path / "missing")]) == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["--config", str(config), "export", A, str(tmp_path / "full")]) == 1
    assert main(["--config", str(config), "backup", str(tmp_path / "full")]) == 1
    assert main(["--config", str(config), "backup", str(data / "inside")]) == 1
    assert main(["--config", str(config), "restore", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 5 and "Traceback" not in err


def test_mboxrd_quoting_and_flags() -> None:
    data = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From everywhere\r\nend\r\n"
    entry = mboxrd.write_message(data, frozenset({"\\Seen", "\\Flagged", "Work"}), 0.0)
    assert entry.startswith(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")
    assert b"\n>From here\n>>From there\n>>>From everywhere\n" in entry
    assert b"Status: RO\n" in entry and b"X-Status: F\n" in entry and b"X-Keywords: Work\n" in entry
    ((back, flags, date),) = list(mboxrd.read_messages(entry + entry))[:1]
    assert back == data and flags == frozenset({"\\Seen", "\\Flagged", "Work"}) and date == 0.0
    assert len(list(mboxrd.read_messages(entry * 3))) == 3


def test_import_foreign_maildir_and_mbox(tmp_path: Path) -> None:
    import os

    data, config = _setup(tmp_path)
    src = tmp_path / "dovecot"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
        (src / ".Entw&APw-rfe" / sub).mkdir(parents=True)
    (src / ".Entw&APw-rfe" / "dovecot-keywords").write_text("0 $Forwarded\n1 Later\n")
    (src / "new" / "1600000000.1.host").write_bytes(b"Subject: new one\r\n\r\nx\r\n")
    (src / "cur" / "1600000001.2.host:2,S").write_bytes(b"Subject: seen\r\n\r\ny\r\n")
    draft = src / ".Entw&APw-rfe" / "cur" / "1600000002.3.host,S=20:2,DSab"
    draft.write_bytes(b"Subject: draft\r\n\r\nz\r\n")
    os.utime(draft, (1_600_000_002, 1_600_000_002))
    assert main(["--config", str(config), "import", B, str(src)]) == 0

    mbox = tmp_path / "mutt.mbox"
    mbox.write_bytes(
        b"From alice@example.net Sat Jan  2 03:04:05 2021\n"
        b"Subject: from mutt\nStatus: RO\nX-Status: A\n\n>From the body\n\n"
        b"From bob@example.net Sun Jan  3 03:04:05 2021\n"
        b"Subject: second\n\nlast line\n"
    )
    assert main(["--config", str(config), "import", C, str(mbox)]) == 0

    async def check() -> None:
        store = EmbeddedMailStore(data)
        try:
            box = store.mailbox(B)
            inbox = await box.messages("INBOX")
            assert [m.flags for m in inbox] == [frozenset(), frozenset({"\\Seen"})]
            drafts = await box.messages("Entwürfe")
            assert drafts[0].flags == frozenset({"\\Draft", "\\Seen", "$Forwarded", "Later"})
            assert drafts[0].internaldate == 1_600_000_002
            assert await box.read("Entwürfe", 1) == b"Subject: draft\r\n\r\nz\r\n"
            c = store.mailbox(C)
            msgs = await c.messages("INBOX")
            assert msgs[0].flags == frozenset({"\\Seen", "\\Answered"})
            assert msgs[0].internaldate == 1_609_556_645  # 2021-01-02 03:04:05 UTC
            assert await c.read("INBOX", 1) == b"Subject: from mutt\r\n\r\nFrom the body\r\n"
            assert await c.read("INBOX", 2) == b"Subject: second\r\n\r\nlast line\r\n"
        finally:
            await store.close()

    asyncio.run(check())
