"""The shared cache of casefolded header values behind SEARCH (``merpati.imap.searchcache``):
answers stay exactly those of the uncached evaluation while other sessions deliver, expunge,
recreate folders, and while the cache evicts."""

from __future__ import annotations

from sansio import Client, append

from merpati.imap.searchcache import SEP, SearchFieldCache, join_values
from merpati.mailstore.memory import MemoryMailStore

A = "alice@example.org"


def msg(sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: team@example.org\r\nSubject: {subject}\r\n{extra}\r\nbody\r\n"
    ).encode()


def lit(text: str) -> str:
    """A non-ASCII search string as a non-synchronising literal (rfc7888)."""
    return f"{{{len(text.encode())}+}}\r\n{text}"


def search(c: Client, criteria: str, uid: bool = True) -> list[int]:
    out = c.cmd(("u UID SEARCH " if uid else "u SEARCH ") + criteria)
    assert out.endswith(b"u OK " + (b"UID " if uid else b"") + b"SEARCH completed\r\n"), out
    line = next(x for x in out.split(b"\r\n") if x.startswith(b"* SEARCH"))
    return [int(x) for x in line.split()[2:]]


def two_sessions() -> tuple[MemoryMailStore, SearchFieldCache, Client, Client]:
    store, cache = MemoryMailStore(), SearchFieldCache(10_000)
    a = Client(store, field_cache=cache).login()
    b = Client(store, field_cache=cache).login()
    return store, cache, a, b


def test_new_mail_from_another_session_is_searched() -> None:
    store, cache, a, b = two_sessions()
    append(store, A, msg("Ann <ann@example.com>", "one"))
    append(store, A, msg("Bob <bob@example.com>", "two"))
    a.select()
    b.select()
    assert search(a, "FROM ann") == [1]
    assert search(a, "NOT FROM ann") == [2]
    # B appends through IMAP; once A is told (EXISTS), its searches match the new message.
    data = msg("=?utf-8?q?ANN_M=C3=9CLLER?= <a2@example.com>", "three")
    out = b.send(b"p APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    assert b"p OK" in out, out
    assert b"* 3 EXISTS" in a.cmd("n NOOP")
    assert search(a, "FROM ann") == [1, 3]
    assert search(a, "CHARSET UTF-8 FROM " + lit("müller")) == [3]
    assert search(b, "FROM ann") == [1, 3]  # B reads what A's searches cached
    assert 3 in cache.folder(A, "INBOX", _uidvalidity(a)).column(("f", "from"))


def test_expunge_by_another_session() -> None:
    store, cache, a, b = two_sessions()
    for i in range(4):
        append(store, A, msg(f"ann{i}@example.com", f"s{i}"))
    a.select()
    b.select()
    assert search(a, "FROM ann") == [1, 2, 3, 4]
    assert b"b OK" in b.cmd("b STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    assert b"x OK" in b.cmd("x EXPUNGE")
    # A's view still holds 2 and 3 until the UID SEARCH tells it of the expunge (after the
    # result): they may be reported this once (from the cache) or not (content gone).
    assert {1, 4} <= set(search(a, "FROM ann")) <= {1, 2, 3, 4}
    assert search(a, "FROM ann") == [1, 4]
    assert search(b, "FROM ann") == [1, 4]
    col = cache.folder(A, "INBOX", _uidvalidity(a)).column(("f", "from"))
    assert set(col) == {1, 4}  # pruned
    assert search(a, "NOT FROM nobody") == [1, 4]
    assert search(a, "FROM ann", uid=False) == [1, 2]  # sequence numbers after the expunge
    assert search(a, "UNSEEN FROM ann3", uid=False) == [2]
    assert search(a, "UNSEEN", uid=False) == [1, 2]


def test_same_uid_in_another_folder() -> None:
    store, _, a, b = two_sessions()
    assert b"c OK" in a.cmd("c CREATE Other")
    append(store, A, msg("ann@example.com", "inbox mail"))
    append(store, A, msg("bob@example.com", "other mail"), folder="Other")
    a.select()
    b.select("Other")
    assert search(a, "FROM ann") == [1]
    assert search(b, "FROM ann") == []
    assert search(b, "FROM bob") == [1]
    assert search(a, "FROM bob") == []
    assert search(a, "SUBJECT inbox") == [1] and search(b, "SUBJECT inbox") == []


def test_recreated_folder_gets_a_new_uidvalidity() -> None:
    store, _, a, b = two_sessions()
    assert b"c OK" in a.cmd("c CREATE Box")
    append(store, A, msg("ann@example.com", "old"), folder="Box")
    a.select("Box")
    assert search(a, "FROM ann") == [1]
    assert b"u OK" in a.cmd("u UNSELECT")
    assert b"d OK" in b.cmd("d DELETE Box")
    assert b"c OK" in b.cmd("c CREATE Box")
    append(store, A, msg("carl@example.com", "new"), folder="Box")
    a.select("Box")
    assert search(a, "FROM ann") == []
    assert search(a, "FROM carl") == [1]


def test_header_key_cached_with_exact_semantics() -> None:
    store, _, a, b = two_sessions()
    append(store, A, msg("ann@example.com", "x", "X-Tag: Red Alert\r\n"))
    append(store, A, msg("bob@example.com", "y", "X-Tag: blue\r\nX-Tag: =?utf-8?q?GR=C3=9CN?=\r\n"))
    append(store, A, msg("carl@example.com", "z"))
    a.select()
    b.select()
    for c in (a, b, a):  # cold, then warm from the other session, then warm again
        assert search(c, "HEADER X-Tag red") == [1]
        assert search(c, "HEADER x-tag " + lit("grün")) == [2]
        assert search(c, 'HEADER X-Tag ""') == [1, 2]  # present, even empty needle
        assert search(c, "NOT HEADER X-Tag blue") == [1, 3]
        assert search(c, "OR HEADER X-Tag blue FROM carl") == [2, 3]
        assert search(c, "HEADER X-Tag red BODY body") == [1]
        assert search(c, "SEEN HEADER X-Tag red") == []


def test_cached_and_uncached_answers_agree() -> None:
    store = MemoryMailStore()
    senders = ["Ann <ann@example.com>", "=?iso-8859-1?q?J=F6rg?= <j@example.de>", "bob@x"]
    for i in range(30):
        extra = f"Cc: carl{i % 4}@example.com\r\n" if i % 3 else ""
        append(
            store,
            A,
            msg(senders[i % 3], f"Subject number {i}", extra),
            flags=(("\\Seen",) if i % 2 else ()),
        )
    criteria = [
        "FROM ann", "FROM " + lit("JÖRG"), "UNSEEN FROM ann", "NOT CC carl1", "OR FROM bob CC carl2",
        "SUBJECT \"number 1\"", "TO team", "BCC x", "FROM ann SUBJECT 7 NOT SEEN",
        "HEADER cc carl3", "OR (SEEN FROM bob) (UNSEEN HEADER subject 2)",
    ]  # fmt: skip
    shared = SearchFieldCache(10_000)
    warm = Client(store, field_cache=shared).login()
    warm.select()
    for crit in criteria:
        cold = Client(store, field_cache=SearchFieldCache(10_000)).login()
        cold.select()
        first = search(cold, crit, uid=False)
        assert search(warm, crit, uid=False) == first, crit
        assert search(warm, crit, uid=False) == first, crit
    assert search(warm, "FROM " + lit("jörg"), uid=False) == list(range(2, 31, 3))


def test_eviction_keeps_answers_right() -> None:
    store = MemoryMailStore()
    cache = SearchFieldCache(5)
    c = Client(store, field_cache=cache).login()
    assert b"c OK" in c.cmd("c CREATE Other")
    for i in range(4):
        append(store, A, msg(f"ann{i}@example.com", "in"))
        append(store, A, msg(f"bob{i}@example.com", "out"), folder="Other")
    for _ in range(2):
        c.select()
        assert search(c, "FROM ann") == [1, 2, 3, 4]
        c.select("Other")
        assert search(c, "FROM bob") == [1, 2, 3, 4]
        assert search(c, "OR FROM bob SUBJECT out") == [1, 2, 3, 4]
    total = sum(f.size() for f in cache._folders.values())
    assert total <= 5


def test_join_values() -> None:
    assert join_values([]) is None
    assert join_values(["Ab", "ß"]) == "ab" + SEP + "ss"


def _uidvalidity(c: Client) -> int:
    assert c.session.view is not None
    return c.session.view.uidvalidity
