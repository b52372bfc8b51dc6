"""imapclient against a real server: the calls a Python mail program makes, IDLE included."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from conftest import PASSWORD, USER
from harness import MerpatiServer

imapclient = pytest.importorskip("imapclient")

MSG = (
    b"From: Ann <ann@example.com>\r\nSubject: Report\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
    b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0=\r\n--b--\r\n"
)


def _client(srv: MerpatiServer) -> imapclient.IMAPClient:
    host, port = srv.address("imaps")
    c = imapclient.IMAPClient(
        host, port, ssl=True, ssl_context=MerpatiServer.client_tls_context(), timeout=10
    )
    c.login(USER, PASSWORD)
    return c


@pytest.fixture
def client(imap_server: MerpatiServer) -> Iterator[imapclient.IMAPClient]:
    c = _client(imap_server)
    yield c
    c.logout()


def test_capabilities_enable_id_namespace(client: imapclient.IMAPClient) -> None:
    caps = client.capabilities()
    for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"SPECIAL-USE", b"ESEARCH"):
        assert cap in caps
    ident = client.id_({"name": "pytest"})
    assert ident[0][:2] == (b"name", b"Merpati")
    ns = client.namespace()
    assert ns.personal == (("", "/"),)
    assert client.enable("CONDSTORE") == [b"CONDSTORE"]


def test_folders(client: imapclient.IMAPClient) -> None:
    client.create_folder("IC/Sub")
    names = [f[2] for f in client.list_folders()]
    assert "INBOX" in names and "IC/Sub" in names
    assert client.find_special_folder(imapclient.imapclient.SENT) == "Sent"
    assert client.folder_exists("IC/Sub")
    client.rename_folder("IC/Sub", "IC/Other")
    status = client.folder_status("IC/Other", ["MESSAGES", "UIDNEXT", "UIDVALIDITY"])
    assert status[b"MESSAGES"] == 0 and status[b"UIDNEXT"] == 1
    client.subscribe_folder("IC/Other")
    assert "IC/Other" in [f[2] for f in client.list_sub_folders()]
    client.unsubscribe_folder("IC/Other")
    client.delete_folder("IC/Other")
    assert not client.folder_exists("IC/Other")
    assert client.get_quota_root("INBOX")[0].mailbox == "INBOX"
    client.create_folder("Ünïcødé")
    assert "Ünïcødé" in [f[2] for f in client.list_folders()]


def test_messages(client: imapclient.IMAPClient) -> None:
    client.create_folder("ICM")
    res = client.append("ICM", MSG, flags=[imapclient.SEEN, "$Label1"])
    assert b"APPENDUID" in res
    client.append("ICM", MSG.replace(b"Report", b"Other"))
    info = client.select_folder("ICM")
    assert info[b"EXISTS"] == 2 and b"UIDVALIDITY" in info
    uids = client.search(["ALL"])
    assert uids == [1, 2]
    assert client.search(["SUBJECT", "other"]) == [2]
    assert client.search(["UNSEEN"]) == [2]
    data = client.fetch([1], ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE", "INTERNALDATE"])
    env = data[1][b"ENVELOPE"]
    assert env.subject == b"Report" and env.from_[0].mailbox == b"ann"
    bs = data[1][b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"mixed"
    assert set(data[1][b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen", b"$Label1"}
    part = client.fetch([1], ["BODY.PEEK[2]", "BINARY.PEEK[2]"])[1]
    assert part[b"BODY[2]"] == b"JVBERi0="
    assert part[b"BINARY[2]"] == b"%PDF-"
    client.add_flags([2], [imapclient.FLAGGED])
    assert b"\\Flagged" in client.get_flags([2])[2]
    client.remove_flags([2], [imapclient.FLAGGED])
    client.copy([1], "Trash")
    client.move([2], "Archive")
    assert client.search() == [1]
    client.delete_messages([1])
    client.uid_expunge([1])
    assert client.search() == []
    client.unselect_folder()


def test_idle(imap_server: MerpatiServer) -> None:
    watcher = _client(imap_server)
    writer = _client(imap_server)
    try:
        watcher.create_folder("ICIdle")
        writer.append("ICIdle", MSG)
        watcher.select_folder("ICIdle")
        writer.select_folder("ICIdle")
        watcher.idle()
        events: list[tuple[str, float]] = []

        def act() -> None:
            time.sleep(0.2)
            events.append(("append", time.monotonic()))
            writer.append("ICIdle", MSG)
            time.sleep(0.2)
            events.append(("flag", time.monotonic()))
            writer.add_flags([1], [imapclient.SEEN])
            time.sleep(0.2)
            events.append(("expunge", time.monotonic()))
            writer.delete_messages([1])
            writer.expunge()

        t = threading.Thread(target=act)
        t.start()
        seen: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 5
        while not any(r[1] == b"EXPUNGE" for r in seen) and time.monotonic() < deadline:
            for resp in watcher.idle_check(timeout=1):
                seen.append((*resp, time.monotonic()))
        t.join()
        watcher.idle_done()
        kinds = [r[1] for r in seen]
        assert b"EXISTS" in kinds and b"FETCH" in kinds and b"EXPUNGE" in kinds
        by_kind = {r[1]: r[-1] for r in seen}
        sent = dict(events)
        assert by_kind[b"EXISTS"] - sent["append"] < 1.0
        assert by_kind[b"FETCH"] - sent["flag"] < 1.0
        assert by_kind[b"EXPUNGE"] - sent["expunge"] < 1.0
    finally:
        watcher.logout()
        writer.logout()
