"""POP3 over real loopback sockets with poplib, against the in-process server (real
listeners, auth, TLS, maildrop locks; the in-memory mail store)."""

from __future__ import annotations

import base64
import itertools
import poplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pop3_util import PASSWORD, InProcessServer, auth_plain, client_tls, make_message

from harness import merpati_env
from merpati.mailstore.api import FlagMode
from merpati.pop3.lock import MaildropLocks

_users = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path_factory.mktemp("pop3"), plaintext=False)
    yield server
    server.stop()


@pytest.fixture
def user(srv: InProcessServer) -> str:
    address = f"user{next(_users)}@example.org"
    srv.add_user(address)
    return address


def body_of(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def wait_unlocked(srv: InProcessServer, account: str) -> None:
    """The server notices a hang-up asynchronously; wait (bounded) until it lets go."""
    locks = MaildropLocks(srv.config.data_dir / "pop3-locks")
    for _ in range(100):
        lock = locks.acquire(account)
        if lock is not None:
            lock.release()
            return
        time.sleep(0.02)
    raise AssertionError("the maildrop lock was never released")


def test_stls_capa_and_login(srv: InProcessServer, user: str) -> None:
    srv.append(user, make_message(1))
    client = srv.pop3()
    try:
        assert client.getwelcome().startswith(b"+OK ")
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        assert "RESP-CODES" in caps and "PIPELINING" in caps and caps["EXPIRE"] == ["NEVER"]
        with pytest.raises(poplib.error_proto, match="STLS"):
            client.user(user)
        client.stls(context=client_tls())
        caps = client.capa()
        assert "STLS" not in caps and "USER" in caps
        assert caps["SASL"] == ["PLAIN", "LOGIN"]
        client.user(user)
        assert client.pass_(PASSWORD).startswith(b"+OK")
        assert client.stat() == (1, len(make_message(1)))
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()


def test_retr_top_uidl_byte_exact(srv: InProcessServer, user: str) -> None:
    messages = [make_message(i, size=3000 * i) for i in range(1, 4)]
    for m in messages:
        srv.append(user, m)
    uidls = [info.uidl for info in srv.inbox(user)]
    client = srv.login(user)
    try:
        _, listing, _ = client.list()
        assert [line.split()[1] for line in listing] == [str(len(m)).encode() for m in messages]
        _, ids, _ = client.uidl()
        assert [line.split()[1].decode() for line in ids] == uidls
        assert client.uidl(2).split()[2].decode() == uidls[1]
        for i, m in enumerate(messages, 1):
            _, lines, _ = client.retr(i)
            assert body_of(lines) == m
        _, lines, _ = client.top(3, 1)
        head = messages[2].split(b"\r\n\r\n", 1)[0]
        assert body_of(lines) == head + b"\r\n\r\nHello.\r\n"
        client.quit()
    finally:
        client.close()
    assert all("\\Seen" in info.flags for info in srv.inbox(user)), "RETR sets \\Seen"
    for _ in range(100):  # the session's end is logged just after the client has its reply
        if b"merpati_pop3_retrieved_total" in srv.app.metrics.render():
            break
        time.sleep(0.02)
    assert b'merpati_pop3_sessions_total{result="quit"}' in srv.app.metrics.render()
    assert f"account={user} retrieved=3 deleted=0 result=quit" in srv.log.getvalue()


def test_top_does_not_set_seen(srv: InProcessServer, user: str) -> None:
    srv.append(user, make_message(1))
    client = srv.login(user)
    client.top(1, 0)
    client.quit()
    assert "\\Seen" not in srv.inbox(user)[0].flags


def test_leave_on_server_pattern(srv: InProcessServer, user: str) -> None:
    """Fetch by UIDL twice without deleting, then delete: what every client's "leave
    messages on server" setting does."""
    for i in range(3):
        srv.append(user, make_message(i))
    have: dict[str, bytes] = {}
    for _round in range(2):
        client = srv.login(user)
        _, ids, _ = client.uidl()
        for line in ids:
            num, uidl = line.split()
            if uidl.decode() not in have:
                have[uidl.decode()] = body_of(client.retr(int(num))[1])
        client.quit()
        assert len(have) == 3
    assert len(srv.inbox(user)) == 3
    # Mail arriving during a session shows up in the next one only.
    client = srv.login(user)
    srv.append(user, make_message(99))
    assert client.stat()[0] == 3
    client.quit()
    client = srv.login(user)
    _, ids, _ = client.uidl()
    assert len(ids) == 4
    for line in ids:
        num, uidl = line.split()
        if uidl.decode() in have:
            client.dele(int(num))
    client.quit()
    left = srv.inbox(user)
    assert len(left) == 1 and left[0].uidl not in have


def test_dele_rset_and_dele_quit(srv: InProcessServer, user: str) -> None:
    for i in range(3):
        srv.append(user, make_message(i))
    mailbox = srv.mailstore.mailbox(user)
    modseq = srv.run(mailbox.folder("INBOX")).highestmodseq
    client = srv.login(user)
    client.dele(1)
    client.dele(2)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(1)
    client.rset()
    client.dele(2)
    assert client.stat()[0] == 2
    client.quit()
    infos = srv.inbox(user)
    assert len(infos) == 2
    changes = srv.run(mailbox.changes_since("INBOX", modseq))
    assert len(changes.expunged) == 1, "IMAP sees the POP3 deletion as an expunge"


def test_dropped_connection_deletes_nothing(srv: InProcessServer, user: str) -> None:
    for i in range(2):
        srv.append(user, make_message(i))
    client = srv.login(user)
    client.dele(1)
    client.dele(2)
    client.close()  # hang up without QUIT
    wait_unlocked(srv, user)
    infos = srv.inbox(user)
    assert len(infos) == 2
    assert not any("\\Deleted" in i.flags for i in infos)


def test_second_session_in_use(srv: InProcessServer, user: str) -> None:
    srv.append(user, make_message(1))
    first = srv.login(user)
    second = srv.pop3s()
    second.user(user)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    first.quit()
    wait_unlocked(srv, user)
    second.user(user)
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_lock_held_by_another_process(srv: InProcessServer, user: str) -> None:
    """Another process (as a second `merpati serve` on the same data dir would) holding the
    account's flock() lock makes this server answer IN-USE."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from merpati.pop3.lock import MaildropLocks\n"
            "lock = MaildropLocks(Path(sys.argv[1])).acquire(sys.argv[2])\n"
            "print('held' if lock else 'busy', flush=True); sys.stdin.read()",
            str(srv.config.data_dir / "pop3-locks"),
            user,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=merpati_env(),
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        client = srv.pop3s()
        client.user(user)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            client.pass_(PASSWORD)
        client.quit()
    finally:
        holder.communicate("", timeout=10)
    client = srv.login(user)  # the other process is gone, and with it its lock
    client.quit()


def test_auth_plain_login_and_failures(srv: InProcessServer, user: str) -> None:
    client = srv.pop3s()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        auth_plain(client, user, "wrong password")
    client.close()
    client = srv.pop3s()
    assert auth_plain(client, user, PASSWORD).startswith(b"+OK")
    client.quit()
    client = srv.pop3s()
    resp = client._shortcmd("AUTH LOGIN")
    assert resp == b"+ VXNlcm5hbWU6"
    assert client._shortcmd(base64.b64encode(user.encode()).decode()) == b"+ UGFzc3dvcmQ6"
    assert client._shortcmd(base64.b64encode(PASSWORD.encode()).decode()).startswith(b"+OK")
    client.quit()


def test_auth_listing(srv: InProcessServer) -> None:
    client = srv.pop3s()
    resp, lines, _ = client._longcmd("AUTH")
    assert resp.startswith(b"+OK") and lines == [b"PLAIN", b"LOGIN"]
    client.quit()


def test_message_expunged_through_imap(srv: InProcessServer, user: str) -> None:
    srv.append(user, make_message(1))
    uid2 = srv.append(user, make_message(2))
    client = srv.login(user)
    box = srv.mailstore.mailbox(user)
    srv.run(box.store_flags("INBOX", [uid2], FlagMode.ADD, ["\\Deleted"]))
    srv.run(box.expunge("INBOX", [uid2]))
    with pytest.raises(poplib.error_proto, match="no longer exists"):
        client.retr(2)
    assert body_of(client.retr(1)[1]) == make_message(1)
    client.dele(2)
    client.quit()
    assert len(srv.inbox(user)) == 1


def raw_lines(sock: socket.socket | ssl.SSLSocket, until: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    sock.settimeout(10)
    while not data.endswith(until) and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_pipelining_in_one_write(srv: InProcessServer, user: str) -> None:
    for i in range(5):
        srv.append(user, make_message(i))
    with socket.create_connection(("127.0.0.1", srv.ports["pop3s"])) as raw:
        tls = client_tls().wrap_socket(raw)
        raw_lines(tls, b"\r\n")
        script = f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\n" + "".join(
            f"RETR {i}\r\n" for i in range(1, 6)
        )
        tls.sendall(script.encode() + b"QUIT\r\n")
        out = raw_lines(tls, b"signing off\r\n")
        assert out.count(b"+OK") == 3 + 5 + 1
        assert out.count(b"\r\n.\r\n") == 5
        tls.close()


def test_stls_injection_ignored(srv: InProcessServer, user: str) -> None:
    """Plaintext pipelined after STLS is not executed once TLS is up (rfc2595:4)."""
    with socket.create_connection(("127.0.0.1", srv.ports["pop3"])) as raw:
        raw_lines(raw, b"\r\n")
        raw.sendall(f"STLS\r\nUSER {user}\r\nPASS {PASSWORD}\r\n".encode())
        assert raw_lines(raw, b"\r\n") == b"+OK begin TLS negotiation\r\n"
        tls = client_tls().wrap_socket(raw)
        tls.sendall(b"STAT\r\n")
        assert raw_lines(tls, b"\r\n").startswith(b"-ERR STAT is not allowed")
        tls.close()


def test_long_line_and_unknown_command(srv: InProcessServer) -> None:
    client = srv.pop3()
    with pytest.raises(poplib.error_proto, match="line too long"):
        client._shortcmd("X" * 300)
    with pytest.raises(poplib.error_proto, match="unknown command"):
        client._shortcmd("XYZZY")
    assert "TOP" in client.capa()
    client.quit()


def test_limits(tmp_path: Path) -> None:
    srv = InProcessServer(
        tmp_path, plaintext=True, pop3_idle_timeout=0.3, bad_commands=3, connections_per_ip=2
    )
    try:
        # too many errors
        with socket.create_connection(("127.0.0.1", srv.ports["pop3"])) as raw:
            raw_lines(raw, b"\r\n")
            raw.sendall(b"A\r\nB\r\nC\r\nNOOP\r\n")
            out = raw_lines(raw, b"closing connection\r\n")
            assert out.endswith(b"-ERR too many errors, closing connection\r\n")
            assert raw.recv(100) == b""
        # idle timeout
        with socket.create_connection(("127.0.0.1", srv.ports["pop3"])) as raw:
            raw_lines(raw, b"\r\n")
            start = time.monotonic()
            assert raw_lines(raw, b"\r\n").startswith(b"-ERR idle")
            assert raw.recv(100) == b""
            assert time.monotonic() - start < 5
        # busy reply past connections_per_ip
        a = socket.create_connection(("127.0.0.1", srv.ports["pop3"]))
        b = socket.create_connection(("127.0.0.1", srv.ports["pop3"]))
        raw_lines(a, b"\r\n")
        raw_lines(b, b"\r\n")
        with socket.create_connection(("127.0.0.1", srv.ports["pop3"])) as c:
            assert raw_lines(c, b"\r\n") == b"-ERR [SYS/TEMP] too many connections\r\n"
        a.close()
        b.close()
    finally:
        srv.stop()


def test_login_delay_and_shutdown(tmp_path: Path) -> None:
    """LOGIN-DELAY (rfc2449:6.5) when configured; then the server stopping: an idle
    logged-in session is told to come back, and nothing is deleted."""
    srv = InProcessServer(tmp_path, plaintext=True, pop3_login_delay=60)
    try:
        early = "early@example.org"
        srv.add_user(early)
        client = srv.pop3()
        assert client.capa()["LOGIN-DELAY"] == ["60"]
        client.user(early)
        client.pass_(PASSWORD)
        client.quit()
        client = srv.pop3()
        client.user(early)
        with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\] wait 60 seconds"):
            client.pass_(PASSWORD)
        client.quit()
        user = "shut@example.org"
        srv.add_user(user)
        srv.append(user, make_message(1))
        client = srv.pop3()
        client.user(user)
        client.pass_(PASSWORD)
        client.dele(1)
        srv.loop.call_soon_threadsafe(srv.app.stopping.set)
        client.sock.settimeout(10)
        assert client.file.readline().startswith(b"-ERR [SYS/TEMP] server shutting down")
        assert client.file.readline() == b""
        client.close()
        assert len(srv.inbox(user)) == 1
    finally:
        srv.stop()


def test_retr_any_order_with_read_ahead(srv: InProcessServer, user: str) -> None:
    """The transport reads ahead for in-order RETRs; out-of-order access still gets the
    right bytes, and deleted or skipped messages do not confuse it."""
    messages = [make_message(i, size=500 + 700 * i) for i in range(12)]
    for m in messages:
        srv.append(user, m)
    client = srv.login(user)
    order = [1, 2, 3, 9, 4, 12, 11, 5, 5, 6, 8, 7, 10]
    client.dele(6)
    for n in order:
        if n == 6:
            with pytest.raises(poplib.error_proto, match="already deleted"):
                client.retr(n)
            continue
        assert body_of(client.retr(n)[1]) == messages[n - 1], n
    client.rset()
    assert body_of(client.retr(6)[1]) == messages[5]
    client.quit()
