"""Python's imaplib against a real ``merpati serve`` over loopback: every command a client uses."""

from __future__ import annotations

import imaplib
import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from conftest import PASSWORD, USER
from harness import MerpatiServer

Connect = Callable[..., imaplib.IMAP4]
MSG = (
    b"From: Joe <joe@example.com>\r\nTo: alice@example.org\r\nSubject: Lunch?\r\n"
    b"Date: Mon, 2 Mar 2020 10:00:00 +0000\r\nMessage-ID: <lunch@example.com>\r\n\r\n"
    b"Shall we have lunch?\r\n"
)


def _folder(m: imaplib.IMAP4, name: str, count: int = 0) -> None:
    typ, _ = m.create(name)
    assert typ == "OK"
    for i in range(count):
        typ, data = m.append(name, "", None, MSG.replace(b"Lunch?", b"Lunch %d" % i))
        assert typ == "OK" and b"APPENDUID" in data[0]


def test_starttls_then_login(imap_server: MerpatiServer) -> None:
    host, port = imap_server.address("imap")
    m = imaplib.IMAP4(host, port, timeout=10)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        m.login(USER, PASSWORD)
    m.starttls(MerpatiServer.client_tls_context())
    assert "AUTH=PLAIN" in m.capabilities
    assert m.login(USER, PASSWORD)[0] == "OK"
    assert m.logout()[0] == "BYE"


def test_login_failures(connect: Connect) -> None:
    m = connect(login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(USER, "wrong")
    m.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
    assert m.state == "AUTH"


def test_folders_and_status(connect: Connect) -> None:
    m = connect()
    _folder(m, "Projects/2024", 2)
    typ, data = m.list('""', "Projects*")
    assert typ == "OK"
    assert data == [b'(\\HasChildren) "/" Projects', b'(\\HasNoChildren) "/" Projects/2024']
    typ, data = m.status("Projects/2024", "(MESSAGES UNSEEN UIDNEXT SIZE)")
    assert typ == "OK" and b"MESSAGES 2 UNSEEN 2 UIDNEXT 3 SIZE" in data[0]
    assert m.rename("Projects/2024", "Projects/2025")[0] == "OK"
    assert m.subscribe("Projects/2025")[0] == "OK"
    assert b"Projects/2025" in b"".join(x for x in m.lsub('""', "*")[1] if isinstance(x, bytes))
    assert m.unsubscribe("Projects/2025")[0] == "OK"
    assert m.delete("Projects/2025")[0] == "OK"
    typ, data = m.create("INBOX")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    typ, data = m.select("Does-not-exist")
    assert typ == "NO"
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    typ, data = m.namespace()
    assert data == [b'(("" "/")) NIL NIL']


def test_list_extended_over_the_wire(connect: Connect) -> None:
    """rfc5258 over a real server (embedded store): a deleted subscribed folder stays
    subscribed and \\NonExistent; RECURSIVEMATCH gives its parent CHILDINFO."""
    m = connect()
    _folder(m, "LX/Keep")
    _folder(m, "LX/Gone")
    assert m.unsubscribe("LX")[0] == "OK" and m.unsubscribe("LX/Keep")[0] == "OK"
    assert m.delete("LX/Gone")[0] == "OK"
    typ, data = m._simple_command("LIST", "(SUBSCRIBED)", '""', "LX/*")  # type: ignore[attr-defined]
    assert typ == "OK"
    typ, data = m._untagged_response(typ, data, "LIST")  # type: ignore[attr-defined]
    assert data == [b'(\\NonExistent \\Subscribed) "/" LX/Gone']
    typ, data = m._simple_command(  # type: ignore[attr-defined]
        "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "LX", "RETURN", "(CHILDREN)"
    )
    typ, data = m._untagged_response(typ, data, "LIST")  # type: ignore[attr-defined]
    assert data == [b'(\\HasChildren) "/" LX ("CHILDINFO" ("SUBSCRIBED"))']
    assert m.unsubscribe("LX/Gone")[0] == "OK"
    typ, data = m.lsub('""', "LX*")
    assert data == [None]


def test_qresync_over_the_wire(connect: Connect) -> None:
    """rfc7162:3.2 against the embedded store: ENABLE QRESYNC, SELECT (QRESYNC ...) with
    known UIDs and sequence-match data, UID FETCH (CHANGEDSINCE VANISHED), VANISHED updates."""
    m = connect()
    _folder(m, "QR", 6)
    typ, data = m._simple_command("ENABLE", "QRESYNC")  # type: ignore[attr-defined]
    assert typ == "OK" and m.untagged_responses.pop("ENABLED") == [b"QRESYNC"]
    typ, _ = m.select("QR")
    uv = int(m.untagged_responses.pop("UIDVALIDITY")[0])
    modseq = int(m.untagged_responses.pop("HIGHESTMODSEQ")[0])
    assert m.uid("STORE", "2,4", "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
    typ, data = m.expunge()
    assert typ == "OK" and m.untagged_responses.pop("VANISHED") == [b"2,4"]
    assert m.uid("STORE", "5", "+FLAGS.SILENT", "(\\Flagged)")[0] == "OK"
    m.untagged_responses.clear()
    assert m.unselect()[0] == "OK"
    typ, data = m._simple_command(  # type: ignore[attr-defined]
        "SELECT", "QR", f"(QRESYNC ({uv} {modseq} 1:6 (1,3 1,3)))"
    )
    assert typ == "OK"
    assert m.untagged_responses.pop("VANISHED") == [b"(EARLIER) 2,4"]
    fetched = m.untagged_responses.pop("FETCH")
    assert len(fetched) == 1 and b"UID 5 FLAGS (\\Flagged" in fetched[0]
    m.state = "SELECTED"  # imaplib does not know that the raw SELECT selected
    typ, data = m.uid("FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {modseq} VANISHED)")
    assert typ == "OK" and len([d for d in data if d]) == 1
    assert m.untagged_responses.pop("VANISHED") == [b"(EARLIER) 2,4"]


def test_limit_code_over_the_wire(connect: Connect) -> None:
    """rfc5530:3 LIMIT from the embedded store: too many keywords on one message; a parser
    bound (101 flags in one list). Neither is BAD, and nothing changed."""
    m = connect()
    _folder(m, "LIM", 1)
    m.select("LIM")
    kws = " ".join(f"kw{i}" for i in range(65))
    typ, data = m.store("1", "+FLAGS", f"({kws})")
    assert typ == "NO" and data[0].startswith(b"[LIMIT]")
    typ, data = m.store("1", "+FLAGS", "(" + " ".join(f"f{i}" for i in range(101)) + ")")
    assert typ == "NO" and data[0].startswith(b"[LIMIT]")
    typ, data = m.fetch("1", "(FLAGS)")
    assert typ == "OK" and b"kw" not in data[0]
    typ, data = m.store("1", "+FLAGS", "(kw1 kw2)")
    assert typ == "OK" and b"kw1 kw2" in data[0]


def test_read_flag_search_move_delete(connect: Connect) -> None:
    m = connect()
    _folder(m, "T1", 3)
    typ, data = m.select("T1")
    assert (typ, data) == ("OK", [b"3"])
    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
    assert typ == "OK" and len([d for d in data if isinstance(d, bytes)]) == 3
    assert b'"Lunch 0"' in data[0] and b'"<lunch@example.com>"' in data[0]
    typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
    assert data[0][1] == b"Subject: Lunch 1\r\n\r\n"
    assert data[1][1] == b"Shall we have lunch?\r\n"
    typ, data = m.uid("FETCH", "3", "(RFC822)")
    assert data[0][1] == MSG.replace(b"Lunch?", b"Lunch 2")
    assert b"\\Seen" in m.fetch("3", "(FLAGS)")[1][0]
    assert m.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert m.search(None, "FLAGGED") == ("OK", [b"1"])
    assert m.search(None, "SUBJECT", '"Lunch 1"') == ("OK", [b"2"])
    assert m.uid("SEARCH", "UNSEEN") == ("OK", [b"1 2"])
    typ, data = m.copy("1", "Trash")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = m.uid("MOVE", "2", "Archive")
    assert typ == "OK"
    assert m.store("1", "+FLAGS.SILENT", "(\\Deleted)") == ("OK", [None])
    typ, data = m.expunge()  # imaplib also returns the EXPUNGE the MOVE sent
    assert (typ, data) == ("OK", [b"2", b"1"])
    typ, data = m.select("T1", readonly=True)
    assert data == [b"1"]
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO"
    m.select("T1")
    assert m.close()[0] == "OK"


def test_literal_limit_and_line_limit(limits_server: MerpatiServer) -> None:
    srv = limits_server
    m = imaplib.IMAP4(*srv.address("imap"), timeout=10)
    assert "APPENDLIMIT=1000" in m.capabilities
    m.login(USER, PASSWORD)
    typ, data = m.append("INBOX", "", None, b"Subject: x\r\n\r\n" + b"x" * 2000)
    assert typ == "NO" and b"TOOBIG" in data[0]
    assert m.noop()[0] == "OK"  # still in sync
    with socket.create_connection(srv.address("imap"), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a NOOP " + b"x" * 1000 + b"\r\nb NOOP\r\n")
        assert f.readline() == b"a BAD [TOOBIG] Command line too long\r\n"
        assert f.readline() == b"b OK NOOP completed\r\n"
        s.sendall(b"c FOO\r\nd BAR\r\n")
        assert f.readline().startswith(b"c BAD")
        assert f.readline().startswith(b"d BAD")
        assert f.readline() == b"* BYE Too many invalid commands\r\n"
        assert f.readline() == b""
    m.logout()


def test_timeouts(limits_server: MerpatiServer) -> None:
    srv = limits_server
    ctx = MerpatiServer.client_tls_context()
    with (
        socket.create_connection(srv.address("imaps"), timeout=10) as raw,
        ctx.wrap_socket(raw) as s,
    ):
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK [CAPABILITY")
        start = time.monotonic()
        assert f.readline() == b"* BYE Autologout; idle for too long\r\n"
        assert 0.5 < time.monotonic() - start < 5
    m = imaplib.IMAP4_SSL(*srv.address("imaps"), ssl_context=ctx, timeout=10)
    m.login(USER, PASSWORD)
    time.sleep(1.2)  # longer than the pre-login timeout, shorter than the idle one
    assert m.noop()[0] == "OK"
    start = time.monotonic()
    line = m.readline()
    assert line == b"* BYE Autologout; idle for too long\r\n"
    assert 1.5 < time.monotonic() - start < 6


def test_idle_wakes_within_a_second(connect: Connect) -> None:
    watcher = connect()
    _folder(watcher, "IdleBox")
    watcher.select("IdleBox")
    tag = watcher._new_tag()  # imaplib has no IDLE before 3.14: speak it directly
    watcher.send(tag + b" IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    times: dict[str, float] = {}

    def other() -> None:
        time.sleep(0.3)
        writer = connect()
        times["sent"] = time.monotonic()
        writer.append("IdleBox", "", None, MSG)

    t = threading.Thread(target=other)
    t.start()
    line = watcher.readline()
    got = time.monotonic()
    t.join()
    assert line == b"* 1 EXISTS\r\n"
    assert got - times["sent"] < 1.0
    watcher.send(b"DONE\r\n")
    rest = watcher.readline()
    while not rest.startswith(tag):
        rest = watcher.readline()
    assert rest.startswith(tag + b" OK")


def test_tls_is_required_on_imaps(imap_server: MerpatiServer) -> None:
    with socket.create_connection(imap_server.address("imaps"), timeout=5) as s:
        s.sendall(b"a CAPABILITY\r\n")
        with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout)):
            data = s.recv(100)
            assert not data.startswith(b"* OK")
            raise ConnectionError
