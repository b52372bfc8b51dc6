"""Sans-I/O transcripts: the session core over the in-memory store, bytes in, bytes out."""

from __future__ import annotations

import base64

from sansio import Client, append, run

from merpati.imap.session import SessionConfig
from merpati.mailstore.memory import MemoryMailStore

A = "alice@example.org"
SIMPLE = (
    b"From: Joe <joe@example.com>\r\nSubject: hello\r\n"
    b"Date: Mon, 2 Mar 2020 10:00:00 +0000\r\n\r\nHello world\r\n"
)


def test_greeting_and_state_table() -> None:
    c = Client()
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    assert c.cmd("a SELECT INBOX") == b"a BAD SELECT is not allowed now\r\n"
    assert c.cmd("a FETCH 1 FLAGS") == b"a BAD FETCH is not allowed now\r\n"
    c.login()
    assert c.cmd("a LOGIN x y") == b"a BAD LOGIN is not allowed now\r\n"
    assert c.cmd("a UID FETCH 1 FLAGS") == b"a BAD UID FETCH is not allowed now\r\n"
    assert c.cmd("a CLOSE") == b"a BAD CLOSE is not allowed now\r\n"


def test_logindisabled_before_tls() -> None:
    c = Client(tls=False)
    assert b"LOGINDISABLED" in c.greeting and b"STARTTLS" in c.greeting
    assert b"AUTH=PLAIN" not in c.greeting
    assert c.cmd("a LOGIN alice@example.org alice-pw").startswith(b"a NO [PRIVACYREQUIRED]")
    out = c.cmd("b STARTTLS")
    assert out == b"b OK Begin TLS negotiation now\r\n" and c.session.want_starttls
    c.session.tls_started()
    caps = c.cmd("c CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    assert b"d OK [CAPABILITY" in c.cmd("d LOGIN alice@example.org alice-pw")


def test_plaintext_allowed_by_config() -> None:
    c = Client(tls=False, config=SessionConfig(allow_plaintext_auth=True))
    assert b"AUTH=PLAIN" in c.greeting and b"LOGINDISABLED" not in c.greeting
    assert b"a OK" in c.cmd("a LOGIN alice@example.org alice-pw")


def test_starttls_discards_pipelined_input() -> None:
    c = Client(tls=False)
    out = c.send(b"a STARTTLS\r\nb LOGIN alice@example.org alice-pw\r\n")
    assert out == b"a OK Begin TLS negotiation now\r\n"
    c.session.tls_started()
    assert c.send(b"") == b""
    assert c.session.account is None


def test_login_failure() -> None:
    c = Client()
    out = c.cmd("a LOGIN alice@example.org wrong")
    assert out == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"


def test_authenticate_plain_sasl_ir_and_continuation() -> None:
    c = Client()
    ir = base64.b64encode(b"\0alice@example.org\0alice-pw")
    assert c.cmd(b"a AUTHENTICATE PLAIN " + ir).startswith(b"a OK [CAPABILITY")
    c = Client()
    assert c.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    assert c.cmd(ir).startswith(b"a OK")
    c = Client()
    assert c.cmd("a AUTHENTICATE LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    assert c.cmd(base64.b64encode(b"alice@example.org")) == b"+ UGFzc3dvcmQ6\r\n"
    assert c.cmd(base64.b64encode(b"alice-pw")).startswith(b"a OK")
    c = Client()
    c.cmd("a AUTHENTICATE PLAIN")
    assert c.cmd("*") == b"a BAD Authentication cancelled\r\n"
    assert c.cmd("b AUTHENTICATE CRAM-MD5").startswith(b"b NO")
    bad = base64.b64encode(b"\0alice@example.org\0nope")
    assert c.cmd(b"c AUTHENTICATE PLAIN " + bad).startswith(b"c NO [AUTHENTICATIONFAILED]")
    assert c.session.account is None


def test_select_rev1_and_rev2() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE, flags=("\\Seen",))
    append(c.store, A, SIMPLE)
    out = c.select()
    lines = out.split(b"\r\n")
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines
    assert b"* OK [UNSEEN 2] First unseen message" in lines
    assert any(x.startswith(b"* OK [PERMANENTFLAGS (") and b"\\*)]" in x for x in lines)
    assert any(x.startswith(b"* OK [UIDVALIDITY ") for x in lines)
    assert b"* OK [UIDNEXT 3] Predicted next UID" in lines
    assert lines[-2] == b"s OK [READ-WRITE] SELECT completed"
    c.cmd("e ENABLE IMAP4rev2")
    out = c.cmd("x EXAMINE INBOX")
    assert out.startswith(b"* OK [CLOSED]")
    assert b"RECENT" not in out and b"UNSEEN" not in out
    assert b'* LIST () "/" INBOX' in out and b"[PERMANENTFLAGS ()]" in out
    assert out.endswith(b"x OK [READ-ONLY] EXAMINE completed\r\n")
    assert c.cmd("y STORE 1 +FLAGS \\Flagged") == b"y NO [READ-ONLY] Mailbox is read-only\r\n"
    assert c.cmd("z SELECT Nope").endswith(b"z NO [NONEXISTENT] No such mailbox\r\n")
    assert c.cmd("w FETCH 1 FLAGS") == b"w BAD FETCH is not allowed now\r\n"


def test_updates_from_other_sessions_and_expunge_timing() -> None:
    store = MemoryMailStore()
    for _ in range(3):
        append(store, A, SIMPLE)
    a = Client(store).login()
    b = Client(store).login()
    a.select()
    b.select()
    # b deletes and expunges message 2; adds a message; flags message 1
    b.cmd("1 STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b"* 2 EXPUNGE" in b.cmd("2 EXPUNGE")
    append(store, A, SIMPLE)
    b.cmd("3 STORE 1 +FLAGS.SILENT (\\Flagged)")
    # FETCH by sequence number: EXISTS and FETCH flags may come, EXPUNGE may not.
    out = a.cmd("f FETCH 1:3 (UID)")
    assert b"EXPUNGE" not in out
    assert b"* 4 EXISTS" in out
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged" in out
    # Message 2 (expunged meanwhile) keeps its number until an EXPUNGE may be sent.
    assert b"* 3 FETCH (UID 3)" in out
    out = a.cmd("s SEARCH ALL")
    assert b"EXPUNGE" not in out and b"* SEARCH 1 2 3 4" in out
    out = a.cmd("n NOOP")
    assert b"* 2 EXPUNGE\r\n" in out and out.endswith(b"n OK NOOP completed\r\n")
    assert b"* SEARCH 1 2 3\r\n" in a.cmd("s SEARCH ALL")
    # UID FETCH may carry EXPUNGE
    b.cmd("4 STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("5 EXPUNGE")
    assert b"* 1 EXPUNGE" in a.cmd("u UID FETCH 1:* (FLAGS)")


def test_fetch_of_message_expunged_elsewhere() -> None:
    store = MemoryMailStore()
    append(store, A, SIMPLE)
    append(store, A, SIMPLE)
    a = Client(store).login()
    b = Client(store).login()
    a.select()
    b.select()
    b.cmd("1 STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("2 EXPUNGE")
    out = a.cmd("f FETCH 1:2 (BODY.PEEK[TEXT])")
    assert b"* 2 FETCH (BODY[TEXT] {13}\r\nHello world\r\n)" in out
    assert out.endswith(b"f NO [EXPUNGEISSUED] Some messages were expunged meanwhile\r\n")


def test_store_flags_and_unchangedsince() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE)
    append(c.store, A, SIMPLE)
    c.select()
    out = c.cmd("a STORE 1:2 +FLAGS (\\Seen $Work)")
    assert b"* 1 FETCH (FLAGS (\\Seen $Work \\Recent))" in out
    assert c.cmd("b STORE 1 -FLAGS.SILENT (\\Seen)") == b"b OK STORE completed\r\n"
    out = c.cmd("c UID STORE 1:2 FLAGS (\\Answered)")
    assert b"* 1 FETCH (FLAGS (\\Answered \\Recent) UID 1)" in out
    modseq = int(c.cmd("d FETCH 1 (MODSEQ)").split(b"MODSEQ (")[1].split(b")")[0])
    c.cmd("e STORE 2 +FLAGS (\\Flagged)")
    out = c.cmd(f"f STORE 1:2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Draft)")
    assert b"f OK [MODIFIED 2] STORE completed" in out
    assert b"* 1 FETCH (FLAGS (\\Answered \\Draft \\Recent) MODSEQ (" in out
    assert c.cmd("g STORE 1 +FLAGS (\\Bogus)").startswith(b"g BAD")


def test_fetch_sets_seen_unless_peek() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE)
    c.select()
    out = c.cmd("a FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert out == (
        b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n)\r\n"
        b"a OK FETCH completed\r\n"
    )
    out = c.cmd("b FETCH 1 (RFC822.TEXT)")
    assert b"RFC822.TEXT {13}\r\nHello world\r\n FLAGS (\\Seen \\Recent))" in out
    assert b"\\Seen" in c.cmd("c FETCH 1 FLAGS")


NESTED = (
    b"From: a@example.com\r\nTo: b@example.com, Group: c@example.com;\r\nSubject: nested\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B1"\r\n\r\n'
    b"--B1\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9\r\n"
    b"--B1\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.com\r\nSubject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=B2\r\n\r\n"
    b"--B2\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
    b"--B2\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n--B2--\r\n"
    b"--B1--\r\n"
)


def test_fetch_sections_nested() -> None:
    c = Client().login()
    append(c.store, A, NESTED)
    c.select()

    def body(spec: str) -> bytes:
        out = c.cmd(f"f FETCH 1 ({spec})")
        assert out.endswith(b"f OK FETCH completed\r\n"), out
        return out.split(b"}\r\n", 1)[1].rsplit(b")\r\nf OK", 1)[0] if b"}\r\n" in out else out

    assert body("BODY.PEEK[1]") == b"caf=C3=A9"
    assert body("BINARY.PEEK[1]") == "café".encode()
    assert b"BINARY.SIZE[1] 5" in c.cmd("b FETCH 1 (BINARY.SIZE[1])")
    assert body("BODY.PEEK[2.HEADER]") == (
        b"From: inner@example.com\r\nSubject: inner\r\n"
        b"Content-Type: multipart/alternative; boundary=B2\r\n\r\n"
    )
    assert body("BODY.PEEK[2.1]") == b"inner text"
    assert body("BODY.PEEK[2.2]") == b"<p>inner</p>"
    assert body("BODY.PEEK[2.MIME]") == b"Content-Type: message/rfc822\r\n\r\n"
    assert body("BODY.PEEK[1]<2.3>") == b"f=C"
    assert b"BODY[9] NIL" in c.cmd("x FETCH 1 (BODY.PEEK[9])")
    out = c.cmd("s FETCH 1 (BODYSTRUCTURE)")
    assert out.startswith(
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL '
        b'"quoted-printable" 9 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7BIT" '
    ) or out.startswith(b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "utf-8")'), out
    assert b'(("inner@example.com"' not in out
    assert b'(NIL "inner" ((NIL NIL "inner" "example.com"))' in out
    assert b'"alternative"' in out and b'"mixed" ("boundary" "B1") NIL NIL NIL))' in out
    env = c.cmd("e FETCH 1 (ENVELOPE)")
    assert (
        b'((NIL NIL "b" "example.com")(NIL NIL "Group" NIL)(NIL NIL "c" "example.com")'
        b"(NIL NIL NIL NIL))" in env
    )


def test_search_keys() -> None:
    c = Client().login()
    box = c.store.mailbox(A)
    date = b"Date: Mon, 2 Mar 2020 10:00:00 +0000\r\n"
    msgs = [
        (
            b"From: Ann <ann@example.com>\r\nTo: x@y\r\nSubject: Invoice 42\r\n"
            + date
            + b"X-Tag: red\r\n\r\nPlease pay.\r\n",
            ("\\Seen",),
        ),
        (
            b"From: Bob <bob@example.com>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
            + date.replace(b"Mon, 2", b"Tue, 3")
            + b"\r\nHallo Welt\r\n",
            ("\\Flagged", "$Work"),
        ),
        (
            b"From: ann@example.com\r\nCc: Carl <carl@example.com>\r\nSubject: big\r\n\r\n"
            + b"z" * 5000
            + b"\r\n",
            ("\\Deleted",),
        ),
    ]
    for data, flags in msgs:
        when = 1583150000.0 + len(data)
        run(box.append("INBOX", data, flags, internaldate=when, internaldate_tz=0))
    c.select()

    def search(criteria: str) -> list[int]:
        out = c.cmd(b"s SEARCH " + criteria.encode())
        assert out.endswith(b"s OK SEARCH completed\r\n"), out
        line = out.split(b"\r\n")[0]
        return [int(x) for x in line.split()[2:]]

    assert search("ALL") == [1, 2, 3]
    assert search("FROM ann") == [1, 3]
    assert search('FROM "ANN@EXAMPLE"') == [1, 3]
    assert search('SUBJECT "grüße"') == [2]
    n = len("grüße".encode())
    assert search(f"CHARSET UTF-8 SUBJECT {{{n}+}}\r\ngrüße") == [2]
    assert search("BODY welt") == [2]
    assert search("TEXT invoice") == [1]
    assert search("HEADER X-Tag red") == [1]
    assert search('HEADER X-Tag ""') == [1]
    assert search("CC carl") == [3]
    assert search("TO x@y") == [1]
    assert search("SEEN") == [1]
    assert search("UNSEEN") == [2, 3]
    assert search("FLAGGED") == [2]
    assert search("DELETED") == [3]
    assert search("UNDELETED") == [1, 2]
    assert search("KEYWORD $work") == [2]
    assert search("UNKEYWORD $Work") == [1, 3]
    assert search("LARGER 1000") == [3]
    assert search("SMALLER 1000") == [1, 2]
    assert search("SENTON 3-Mar-2020") == [2]
    assert search("SENTBEFORE 3-Mar-2020") == [1]
    assert search("SENTSINCE 3-Mar-2020") == [2]
    assert search("SINCE 1-Jan-2020") == [1, 2, 3]
    assert search("BEFORE 1-Jan-2020") == []
    assert search("ON 2-Mar-2020") == [1, 2, 3]
    assert search("OR FLAGGED SEEN") == [1, 2]
    assert search("NOT (SEEN FROM ann)") == [2, 3]
    assert search("OR SEEN FROM bob") == [1, 2]
    assert search("NOT FROM ann") == [2]
    assert search("UNSEEN FROM ann") == [3]
    assert search("OR (UNSEEN FROM bob) (SEEN BODY pay)") == [1, 2]
    assert search("NOT OR FROM bob DELETED") == [1]
    assert search("2:*") == [2, 3]
    assert search("UID 1,3") == [1, 3]
    assert search("NEW") == [2, 3]
    assert search("OLD") == []
    assert search("RECENT DRAFT") == []
    assert c.cmd("m SEARCH MODSEQ 1").startswith(b"* SEARCH 1 2 3 (MODSEQ ")
    out = c.cmd("x SEARCH CHARSET KOI8-R ALL")
    assert out == b"x NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
    out = c.cmd("e UID SEARCH RETURN (MIN MAX COUNT) FROM ann")
    assert out.startswith(b'* ESEARCH (TAG "e") UID MIN 1 MAX 3 COUNT 2\r\n')
    out = c.cmd("e SEARCH RETURN () NOT ALL")
    assert out.startswith(b'* ESEARCH (TAG "e")\r\n')
    assert c.cmd("v SEARCH RETURN (SAVE) FROM ann") == b"v OK SEARCH completed\r\n"
    assert b"* 3 FETCH (UID 3)" in c.cmd("w FETCH $ (UID)")
    c.cmd("en ENABLE IMAP4rev2")
    assert c.cmd("r SEARCH FLAGGED").startswith(b'* ESEARCH (TAG "r") ALL 2\r\n')


def test_copy_move_append_codes() -> None:
    store = MemoryMailStore(quota_lookup=lambda a: 2000)
    c = Client(store).login()
    out = c.cmd(
        b'a APPEND INBOX (\\Seen) "01-Feb-2024 10:20:30 +0100" {%d}\r\n' % len(SIMPLE) + SIMPLE
    )
    assert (
        out.startswith(b"+ Ready")
        and b"a OK [APPENDUID " in out
        and out.endswith(b" 1] APPEND completed\r\n")
    )
    out = c.cmd(b"b APPEND Nope {%d+}\r\n" % len(SIMPLE) + SIMPLE)
    assert out == b"b NO [TRYCREATE] No such mailbox\r\n"
    big = b"Subject: x\r\n\r\n" + b"y" * 3000
    out = c.cmd(b"c APPEND INBOX {%d+}\r\n" % len(big) + big)
    assert out == b"c NO [OVERQUOTA] Quota exceeded\r\n"
    c.select()
    out = c.cmd("d INTERNALDATE")
    out = c.cmd("d FETCH 1 INTERNALDATE")
    assert b'INTERNALDATE "01-Feb-2024 10:20:30 +0100"' in out
    assert c.cmd("e COPY 1 Nope") == b"e NO [TRYCREATE] No such mailbox\r\n"
    assert c.cmd("f COPY 1 Trash").startswith(b"f OK [COPYUID ")
    out = c.cmd("g UID MOVE 1 Archive")
    assert out.startswith(b"* OK [COPYUID ") and b"* 1 EXPUNGE\r\n" in out
    assert out.endswith(b"g OK UID MOVE completed\r\n")
    assert c.cmd("h COPY 1 Trash").startswith(b"h BAD")  # no message 1 any more
    assert c.cmd("i CREATE Trash") == b"i NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.cmd("j DELETE INBOX") == b"j NO [CANNOT] INBOX cannot be deleted\r\n"
    assert c.cmd("k DELETE Nope") == b"k NO [NONEXISTENT] No such mailbox\r\n"
    c.cmd("l CREATE Box/Sub")
    assert c.cmd("l DELETE Box").startswith(b"l NO [HASCHILDREN] ")  # rfc9051:7.1
    assert c.cmd("m RENAME Box Trash") == b"m NO [ALREADYEXISTS] Mailbox already exists\r\n"
    assert c.cmd("n RENAME Nope Else") == b"n NO [NONEXISTENT] No such mailbox\r\n"
    assert c.cmd("o RENAME Box Box/Sub/In").startswith(b"o NO [CANNOT] ")
    assert c.cmd("p SELECT Nope").endswith(b"p NO [NONEXISTENT] No such mailbox\r\n")
    out = c.cmd("q GETQUOTAROOT INBOX")
    assert b'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE 1 1)\r\n' in out


def test_literal_too_large_and_bad_commands() -> None:
    c = Client(config=SessionConfig(max_line=200, max_literal=10, bad_commands=3)).login()
    assert c.cmd("a APPEND INBOX {11}") == b"a NO [TOOBIG] Literal too large\r\n"
    assert c.cmd("b NOOP " + "x" * 300) == b"b BAD [TOOBIG] Command line too long\r\n"
    out = c.cmd("c FOO")
    assert out.startswith(b"c BAD") and out.endswith(b"* BYE Too many invalid commands\r\n")
    assert c.session.closed


def test_mailbox_names_mutf7_and_utf8() -> None:
    c = Client().login()
    assert c.cmd("a CREATE Entw&APw-rfe") == b"a OK CREATE completed\r\n"
    assert b'"/" Entw&APw-rfe\r\n' in c.cmd('b LIST "" Entw*')
    assert c.cmd("c CREATE Entw\xfcrfe".encode("latin-1")).startswith(b"c BAD")
    c.cmd("d ENABLE UTF8=ACCEPT")
    assert '"/" "Entwürfe"\r\n'.encode() in c.cmd('e LIST "" Entw*')
    assert b"f OK" in c.cmd('f SELECT "Entwürfe"'.encode())


def test_list_variants() -> None:
    c = Client().login()
    c.cmd("a CREATE Work/Projects")
    c.cmd("b UNSUBSCRIBE Junk")
    out = c.cmd('c LIST "" %')
    assert b'* LIST (\\HasChildren) "/" Work\r\n' in out
    assert b"Work/Projects" not in out
    assert c.cmd('d LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\nd OK LIST completed\r\n'
    out = c.cmd('e LIST (SPECIAL-USE) "" *')
    assert b"\\Sent" in out and b"INBOX" not in out
    out = c.cmd('f LIST (SUBSCRIBED) "" *')
    assert b"Junk" not in out and b"\\Subscribed" in out
    out = c.cmd('g LIST "" (INBOX Work/*) RETURN (STATUS (MESSAGES UNSEEN))')
    assert b"* STATUS INBOX (MESSAGES 0 UNSEEN 0)" in out and b"Work/Projects" in out
    assert b"Junk" not in c.cmd('h LSUB "" *')
    assert c.cmd('i LIST (BOGUS) "" *').startswith(b"i BAD")
    assert b'"/" INBOX' in c.cmd('j LIST "" inbox')


def test_list_extended_nonexistent_and_childinfo() -> None:
    """rfc5258:5 examples: a subscribed name of a deleted folder is \\NonExistent; with
    RECURSIVEMATCH a parent whose child meets the criteria carries CHILDINFO."""
    c = Client().login()
    for name in ("Fruit/Apple", "Fruit/Peach", "Tofu", "Eps/Mu", "Baz2/Bar2"):
        assert c.cmd(f"a CREATE {name}") == b"a OK CREATE completed\r\n"
    for name in ("Fruit", "Fruit/Apple", "Baz2", "Tofu", "Junk"):
        c.cmd(f"u UNSUBSCRIBE {name}")
    assert c.cmd("d DELETE Fruit/Peach") == b"d OK DELETE completed\r\n"
    out = c.cmd('b LIST (SUBSCRIBED) "" Fruit/*')
    assert out == (
        b'* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach\r\nb OK LIST completed\r\n'
    )
    assert b"Fruit/Peach" not in c.cmd('c LIST "" *')  # only in subscription selections
    # a plain IMAP4rev1 LSUB shows it \Noselect
    assert b'* LSUB (\\Noselect) "/" Fruit/Peach\r\n' in c.cmd('e LSUB "" Fruit/*')
    out = c.cmd('f LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert b'* LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))\r\n' in out
    assert b'* LIST (\\HasChildren \\Subscribed) "/" Eps ("CHILDINFO" ("SUBSCRIBED"))' in out
    assert b'* LIST (\\HasChildren \\Subscribed) "/" Baz2' not in out
    assert b'"/" Baz2 ("CHILDINFO"' in out  # Baz2/Bar2 is subscribed
    assert b"Tofu" not in out and b'"/" Fruit/' not in out
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" INBOX\r\n' in out
    # rfc3501:6.3.9 LSUB with "%": the unsubscribed parent of a subscribed name, \\Noselect
    out = c.cmd('f2 LSUB "" %')
    assert b'* LSUB (\\Noselect \\HasChildren) "/" Fruit\r\n' in out
    assert b'* LSUB (\\HasChildren) "/" Eps\r\n' in out and b"Tofu" not in out
    assert b"CHILDINFO" not in out and b'"/" Fruit/' not in out
    # without RECURSIVEMATCH: no parents, no CHILDINFO
    out = c.cmd('g LIST (SUBSCRIBED) "" %')
    assert b"CHILDINFO" not in out and b"Fruit" not in out and b'"/" Eps\r\n' in out
    # RECURSIVEMATCH alone (or with REMOTE only) is refused
    assert c.cmd('h LIST (RECURSIVEMATCH) "" %').startswith(b"h BAD")
    assert c.cmd('i LIST (REMOTE RECURSIVEMATCH) "" %').startswith(b"i BAD")
    # a deleted subscribed folder under a missing parent: the parent is \NonExistent too
    c.cmd("j DELETE Baz2/Bar2")
    c.cmd("k DELETE Baz2")
    out = c.cmd('l LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert b'* LIST (\\NonExistent) "/" Baz2 ("CHILDINFO" ("SUBSCRIBED"))\r\n' in out
    out = c.cmd('m LIST (SUBSCRIBED) "" *')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" Baz2/Bar2\r\n' in out
    # UNSUBSCRIBE of the deleted name works; then it is gone everywhere
    assert c.cmd("n UNSUBSCRIBE Baz2/Bar2") == b"n OK UNSUBSCRIBE completed\r\n"
    assert b"Baz2" not in c.cmd('o LIST (SUBSCRIBED RECURSIVEMATCH) "" *')
    assert c.cmd("p SUBSCRIBE Nowhere").startswith(b"p NO [NONEXISTENT]")


def test_list_extended_return_options() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE)
    c.cmd("a CREATE Work/Projects")
    c.cmd("b UNSUBSCRIBE Work")
    out = c.cmd('c LIST "" % RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)')
    assert b'* LIST (\\HasChildren) "/" Work\r\n' in out
    assert b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent\r\n' in out
    # LIST-STATUS: a STATUS line after each selectable mailbox, none for \NonExistent ones
    c.cmd("d DELETE Work/Projects")
    c.cmd("e CREATE Gone")
    c.cmd("f DELETE Gone")
    out = c.cmd('g LIST (SUBSCRIBED) "" * RETURN (STATUS (MESSAGES))')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" Gone\r\n' in out
    assert b"* STATUS Gone" not in out and b"* STATUS INBOX (MESSAGES 1)\r\n" in out
    assert b'"/" Work\r\n' not in out  # unsubscribed; its deleted child is still subscribed
    assert b'* LIST (\\NonExistent \\Subscribed) "/" Work/Projects\r\n' in out
    # SPECIAL-USE selection with RECURSIVEMATCH: CHILDINFO names both criteria
    c.cmd("h CREATE Lists/Sent2 (USE (\\Sent))")
    out = c.cmd('i LIST (SPECIAL-USE RECURSIVEMATCH) "" %')
    assert b'"/" Lists ("CHILDINFO" ("SPECIAL-USE"))\r\n' in out
    assert b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n' in out and b"INBOX" not in out


def test_limit_response_code() -> None:
    """rfc5530:3 / rfc9051:7.1 LIMIT: a well-formed command past one of our bounds is refused
    with NO [LIMIT] (not BAD: it does not count towards the bad-command BYE)."""
    from merpati.mailstore.api import MAX_FOLDER_KEYWORDS
    from merpati.mailstore.names import MAX_KEYWORDS

    c = Client().login()
    for _ in range(4):
        append(c.store, A, SIMPLE)
    out = c.select()
    assert b"[PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)]" in out
    kws = [f"kw{i}" for i in range(MAX_FOLDER_KEYWORDS)]
    # parser bounds: 101 flags in one list, 101 FETCH attributes
    many = " ".join(f"f{i}" for i in range(101))
    assert c.cmd(f"a STORE 1 +FLAGS ({many})") == b"a NO [LIMIT] Too large: too many flags\r\n"
    atts = " ".join(["UID"] * 101)
    assert c.cmd(f"b FETCH 1 ({atts})").startswith(b"b NO [LIMIT] ")
    # one message: at most MAX_KEYWORDS keywords, in one STORE or added up
    over = " ".join(kws[: MAX_KEYWORDS + 1])
    assert c.cmd(f"c STORE 1 +FLAGS ({over})").startswith(b"c NO [LIMIT] Too many keywords")
    assert c.cmd(f"d STORE 1 +FLAGS ({' '.join(kws[:50])})").startswith(b"* 1 FETCH")
    out = c.cmd(f"e STORE 1 +FLAGS ({' '.join(kws[50:65])})")
    assert out.startswith(b"e NO [LIMIT]")
    assert b"kw50" not in c.cmd("f FETCH 1 (FLAGS)")
    big = b"x APPEND INBOX (" + over.encode() + b") {%d+}\r\n" % len(SIMPLE) + SIMPLE
    assert c.send(big + b"\r\n").startswith(b"x NO [LIMIT]")
    # the folder: at most MAX_FOLDER_KEYWORDS keywords
    for seq in (2, 3, 4):
        chunk = " ".join(kws[seq * 50 - 50 : seq * 50])
        assert b"OK STORE" in c.cmd(f"g STORE {seq} +FLAGS.SILENT ({chunk})")
    assert c.cmd("h STORE 1 +FLAGS ($Another)").startswith(b"h NO [LIMIT] Too many keywords")
    assert b"h OK" in c.cmd("h STORE 1 +FLAGS (kw199 \\Seen)")  # known ones still work
    # a full folder no longer offers \* in PERMANENTFLAGS (rfc9051:7.1)
    out = c.select()
    assert b"\\*)]" not in out and b"[PERMANENTFLAGS (" in out
    assert c.session.bad_count == 0 and not c.session.closed


def test_rename_inbox() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE)
    assert c.cmd("a RENAME INBOX Old") == b"a OK RENAME completed\r\n"
    assert b"MESSAGES 0" in c.cmd("b STATUS INBOX (MESSAGES)")
    assert b"MESSAGES 1" in c.cmd("c STATUS Old (MESSAGES)")


def test_close_unselect_expunge() -> None:
    c = Client().login()
    for _ in range(3):
        append(c.store, A, SIMPLE)
    c.select()
    c.cmd("a STORE 1,3 +FLAGS (\\Deleted)")
    assert c.cmd("b UID EXPUNGE 3") == b"* 3 EXPUNGE\r\nb OK UID EXPUNGE completed\r\n"
    assert c.cmd("c UNSELECT") == b"c OK UNSELECT completed\r\n"
    c.select()
    assert c.cmd("d CLOSE") == b"d OK CLOSE completed\r\n"
    assert b"MESSAGES 1" in c.cmd("e STATUS INBOX (MESSAGES)")


def test_idle_sees_other_sessions() -> None:
    store = MemoryMailStore()
    a = Client(store).login()
    a.select()
    assert a.cmd("i IDLE") == b"+ idling\r\n"
    append(store, A, SIMPLE)
    run(a.session.idle_poll())
    assert a.take() == b"* 1 EXISTS\r\n* 1 RECENT\r\n"
    assert a.cmd("DONE") == b"i OK IDLE terminated\r\n"
    a.cmd("j IDLE")
    assert a.cmd("NOPE") == b"j BAD Expected DONE\r\n"


def test_enable_condstore_and_fetch_changedsince() -> None:
    c = Client().login()
    for _ in range(3):
        append(c.store, A, SIMPLE)
    out = c.cmd("a SELECT INBOX (CONDSTORE)")
    hms = int(out.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
    c.cmd("b STORE 2 +FLAGS.SILENT (\\Seen)")
    out = c.cmd(f"c FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
    assert out.count(b"FETCH (") == 1 and b"* 2 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (" in out
    assert c.cmd("d ENABLE CONDSTORE FOO") == b"* ENABLED\r\nd OK ENABLE completed\r\n"


def test_id_namespace_noop_logout() -> None:
    c = Client().login()
    assert c.cmd('a ID ("name" "test")').startswith(b'* ID ("name" "Merpati"')
    assert c.cmd("b NAMESPACE") == b'* NAMESPACE (("" "/")) NIL NIL\r\nb OK NAMESPACE completed\r\n'
    assert c.cmd("c LOGOUT") == b"* BYE Logging out\r\nc OK LOGOUT completed\r\n"
    assert c.session.closed
    assert c.cmd("d NOOP") == b""


def test_append_copy_into_selected_mailbox_announce_exists() -> None:
    c = Client().login()
    append(c.store, A, SIMPLE)
    c.select()
    out = c.cmd(b"a APPEND INBOX {%d+}\r\n" % len(SIMPLE) + SIMPLE)
    assert out.startswith(b"* 2 EXISTS\r\n* 2 RECENT\r\n") and b"a OK [APPENDUID" in out
    out = c.cmd("b COPY 1:2 INBOX")
    assert out.startswith(b"* 4 EXISTS\r\n") and b"b OK [COPYUID" in out
    assert b" 1:2 3:4]" in out


def test_rev2_and_condstore_unsolicited_updates() -> None:
    store = MemoryMailStore()
    append(store, A, SIMPLE)
    a = Client(store).login()
    b = Client(store).login()
    a.cmd("e ENABLE IMAP4rev2 CONDSTORE")
    a.select()
    b.select()
    b.cmd("s STORE 1 +FLAGS (\\Answered)")
    out = a.cmd("n NOOP")
    assert out.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Answered) MODSEQ (")
    assert b"\\Recent" not in out


def test_idle_in_authenticated_state() -> None:
    c = Client().login()
    assert c.cmd("i IDLE") == b"+ idling\r\n"
    run(c.session.idle_poll())
    assert c.take() == b""
    assert c.cmd("DONE") == b"i OK IDLE terminated\r\n"


def test_qresync() -> None:
    store = MemoryMailStore()
    for _ in range(4):
        append(store, A, SIMPLE)
    a = Client(store).login()
    b = Client(store).login()
    assert a.cmd("q SELECT INBOX (QRESYNC (1 1))") == b"q BAD QRESYNC must be enabled first\r\n"
    assert a.cmd("e ENABLE QRESYNC") == b"* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n"
    out = a.cmd("s SELECT INBOX")
    uidvalidity = int(out.split(b"[UIDVALIDITY ")[1].split(b"]")[0])
    modseq = int(out.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
    a.cmd("u UNSELECT")
    b.select()
    b.cmd("1 STORE 1 +FLAGS.SILENT (\\Flagged)")
    b.cmd("2 STORE 2,3 +FLAGS.SILENT (\\Deleted)")
    b.cmd("3 EXPUNGE")
    out = a.cmd(f"s SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:4))")
    assert b"* VANISHED (EARLIER) 2:3\r\n" in out
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (" in out
    assert out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    # expunges are VANISHED now, in updates and in EXPUNGE's own reply
    b.cmd("4 STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("5 EXPUNGE")
    assert a.cmd("n NOOP").startswith(b"* VANISHED 1\r\n")
    out = a.cmd(f"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert out.startswith(b"* VANISHED (EARLIER) 1:3\r\n")
    a.cmd("g STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert a.cmd("h EXPUNGE") == b"* VANISHED 4\r\nh OK EXPUNGE completed\r\n"


def test_too_many_auth_failures_end_the_session() -> None:
    c = Client()
    for i in range(4):
        assert c.cmd(f"a{i} LOGIN alice@example.org wrong").startswith(b"a%d NO" % i)
    out = c.cmd("z LOGIN alice@example.org wrong")
    assert out == b"* BYE Too many authentication failures\r\n"
    assert c.session.closed
