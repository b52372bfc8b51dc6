"""The account store: domains, accounts, aliases, catch-all, plus-addressing, loops."""

from __future__ import annotations

from pathlib import Path

import pytest

from merpati.accounts.store import AccountStore
from merpati.address import AddressError, canonical_address, canonical_domain, parse_address
from merpati.auth.passwords import check_password
from merpati.errors import OperationalError


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    s = AccountStore.open(tmp_path)
    s.add_domain("example.org")
    s.add_account("alice@example.org", "pw-alice")
    s.add_account("bob@example.org", "pw-bob", quota=1000)
    return s


def test_address_syntax() -> None:
    assert canonical_domain("Bücher.DE") == "xn--bcher-kva.de"
    assert canonical_address("Alice@EXAMPLE.org") == "alice@example.org"
    assert parse_address('"john smith"@example.org').local == "john smith"
    assert canonical_address("ü@例え.jp") == "ü@xn--r8jz45g.jp"
    for bad in ["", "noat", "a@", "@b.c", "a..b@c.d", "a@-x.org", "a@b@c.d", "x" * 65 + "@a.b"]:
        with pytest.raises(AddressError):
            parse_address(bad)


def test_hashes_are_argon2id_and_never_plaintext(store: AccountStore, tmp_path: Path) -> None:
    h = store.password_hash("alice@example.org")
    assert h is not None and h.startswith("$argon2id$")
    assert check_password(h, "pw-alice")
    assert not check_password(h, "pw-bob")
    raw = (tmp_path / "accounts.db").read_bytes()
    wal = tmp_path / "accounts.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"pw-alice" not in raw


def test_domain_errors(store: AccountStore) -> None:
    with pytest.raises(OperationalError, match="already exists"):
        store.add_domain("EXAMPLE.org")
    with pytest.raises(OperationalError, match="still has 2 account"):
        store.remove_domain("example.org")
    with pytest.raises(OperationalError, match="unknown domain"):
        store.remove_domain("nowhere.test")
    with pytest.raises(OperationalError, match="bad domain"):
        store.add_domain("bad_domain!")
    store.add_domain("Bücher.de")
    assert "xn--bcher-kva.de" in store.domains()
    assert store.is_local_domain("bücher.de")


def test_account_errors(store: AccountStore) -> None:
    with pytest.raises(OperationalError, match="already exists"):
        store.add_account("ALICE@example.org", "x")
    with pytest.raises(OperationalError, match="unknown domain"):
        store.add_account("carol@nowhere.test", "x")
    with pytest.raises(OperationalError, match="bad address"):
        store.add_account("not an address", "x")
    with pytest.raises(OperationalError, match="unknown account"):
        store.remove_account("zed@example.org")
    assert store.get_account("Bob@Example.org") is not None
    assert store.get_account("bob@example.org").quota == 1000  # type: ignore[union-attr]
    store.remove_account("bob@example.org")
    assert store.get_account("bob@example.org") is None
    assert [a.address for a in store.accounts("example.org")] == ["alice@example.org"]


def test_expand_accounts_plus_and_remote(store: AccountStore) -> None:
    e = store.expand("Alice@example.org")
    assert e.found and e.local == ("alice@example.org",) and e.remote == ()
    e = store.expand("alice+lists@example.org")
    assert e.found and e.local == ("alice@example.org",)
    e = store.expand("nobody@example.org")
    assert not e.found
    e = store.expand("someone@remote.test")
    assert e.found and e.remote == ("someone@remote.test",) and e.local == ()


def test_aliases_recursive_dedup_remote(store: AccountStore) -> None:
    store.add_alias("team@example.org", ["alice@example.org", "staff@example.org"])
    store.add_alias("staff@example.org", ["alice@example.org", "bob@example.org", "x@far.test"])
    e = store.expand("team@example.org")
    assert e.local == ("alice@example.org", "bob@example.org")
    assert e.remote == ("x@far.test",)
    assert store.owns("bob@example.org", "staff@example.org")
    assert store.owns("alice@example.org", "alice+tag@example.org")
    assert not store.owns("alice@example.org", "bob@example.org")
    assert dict(store.aliases())["team@example.org"] == ("alice@example.org", "staff@example.org")
    store.remove_alias("team@example.org")
    assert not store.expand("team@example.org").found


def test_alias_loop_is_refused(store: AccountStore) -> None:
    store.add_alias("a@example.org", ["b@example.org"])
    store.add_alias("b@example.org", ["c@example.org"])
    with pytest.raises(OperationalError, match="alias loop"):
        store.add_alias("c@example.org", ["a@example.org"])
    assert store.alias_targets("c@example.org") == ()
    with pytest.raises(OperationalError, match="alias loop"):
        store.add_alias("self@example.org", ["self@example.org"])


def test_catch_all(store: AccountStore) -> None:
    store.add_alias("@example.org", ["alice@example.org"])
    e = store.expand("anything@example.org")
    assert e.found and e.local == ("alice@example.org",)
    # An existing account is not swallowed by the catch-all.
    assert store.expand("bob@example.org").local == ("bob@example.org",)
    with pytest.raises(OperationalError, match="unknown domain"):
        store.add_alias("@other.test", ["alice@example.org"])


def test_removing_domain_drops_its_aliases(tmp_path: Path) -> None:
    s = AccountStore.open(tmp_path)
    s.add_domain("d.test")
    s.add_alias("@d.test", ["x@far.test"])
    s.add_alias("info@d.test", ["x@far.test"])
    s.remove_domain("d.test")
    assert s.aliases() == []


def test_lookups_see_changes_from_another_connection_at_once(
    store: AccountStore, tmp_path: Path
) -> None:
    """Lookups are remembered, but a change made elsewhere (the CLI while serve runs) is seen
    by lookups from a millisecond later, and one made through this store at once."""
    import time

    from merpati.accounts.store import SIGNATURE_SECONDS

    assert store.expand("carol@example.org").found is False
    assert store.is_local_domain("example.net") is False
    changes = AccountStore.open(tmp_path)  # another connection: what `merpati user add` uses

    class Other:  # each change, then the millisecond after which it must be seen
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            method = getattr(changes, name)

            def call(*args, **kwargs):  # type: ignore[no-untyped-def]
                result = method(*args, **kwargs)
                time.sleep(SIGNATURE_SECONDS)
                return result

            return call

    other = Other()
    for _ in range(20):  # back-to-back changes, within one clock tick of each other
        n = len(store.accounts())
        other.add_account(f"u{n}@example.org", "pw")
        assert store.get_account(f"u{n}@example.org") is not None
        assert store.expand(f"u{n}+tag@example.org").local == (f"u{n}@example.org",)
    other.add_account("carol@example.org", "pw-carol", quota=5)
    assert store.expand("carol@example.org").local == ("carol@example.org",)
    assert store.quota("carol@example.org") == 5
    other.set_quota("carol@example.org", 7)
    assert store.quota("carol@example.org") == 7
    other.add_domain("example.net")
    assert store.is_local_domain("example.net") is True
    other.add_alias("team@example.org", ["carol@example.org", "alice@example.org"])
    assert store.expand("team@example.org").local == ("carol@example.org", "alice@example.org")
    other.remove_alias("team@example.org")
    assert store.expand("team@example.org").found is False
    store.add_alias("@example.net", ["alice@example.org"])  # through this store
    assert store.expand("x@example.net").local == ("alice@example.org",)
    other.remove_account("carol@example.org")
    assert store.get_account("carol@example.org") is None
    assert store.expand("carol@example.org").found is False
    other.close()
