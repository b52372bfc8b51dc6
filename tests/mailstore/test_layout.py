"""Table tests of the on-disk naming: Maildir++ folder names, account paths, file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from merpati.mailstore.embedded.layout import (
    account_dir,
    filename,
    folder_dirname,
    folder_name,
    parse_filename,
)


@pytest.mark.parametrize(
    ("name", "dirname"),
    [
        ("INBOX", ""),
        ("Sent", ".Sent"),
        ("A/B/C", ".A.B.C"),
        ("x.y", ".x\\2ey"),
        ("back\\slash", ".back\\5cslash"),
        ("a&b", ".a&-b"),
        ("Entwürfe", ".Entw&APw-rfe"),  # modified UTF-7, as Dovecot writes it
        ("日本語/子", ".&ZeVnLIqe-.&W1A-"),
        ("INBOX/Sub", ".INBOX.Sub"),
    ],
)
def test_folder_dirnames_round_trip(name: str, dirname: str) -> None:
    assert folder_dirname(name) == dirname
    assert folder_name(dirname) == name


@pytest.mark.parametrize("bad", ["cur", "..", ".", ".a..b", "tmp"])
def test_non_folder_dirnames(bad: str) -> None:
    assert folder_name(bad) is None


@pytest.mark.parametrize(
    ("account", "tail"),
    [
        ("alice@example.org", ("example.org", "alice")),
        ("../../etc@example.org", ("example.org", "%2E.%2F..%2Fetc")),
        ("a/b@Example.ORG", ("example.org", "a%2Fb")),
        ("jörg@xn--bcher-kva.example", ("xn--bcher-kva.example", "jörg")),
        (".hidden@x.test", ("x.test", "%2Ehidden")),
    ],
)
def test_account_dirs_are_safe(account: str, tail: tuple[str, str]) -> None:
    path = account_dir(Path("/m"), account)
    assert (path.parent.name, path.name) == tail
    assert path.parent.parent == Path("/m")


def test_file_names() -> None:
    flags = frozenset({"\\Seen", "\\Flagged", "\\Answered", "$Label", "Work"})
    name = filename("123.M4P5Q6Rab.host", 42, flags, {"$Label": "a", "Work": "c"})
    assert name == "123.M4P5Q6Rab.host,S=42:2,FRSac"
    assert filename("b", 1, None) == "b,S=1"
    assert parse_filename(name, {"a": "$Label", "c": "Work"}) == ("123.M4P5Q6Rab.host", flags)
    assert parse_filename(name) == (
        "123.M4P5Q6Rab.host",
        frozenset({"\\Seen", "\\Flagged", "\\Answered"}),
    )
    assert parse_filename("1700000000.X1.otherhost") == ("1700000000.X1.otherhost", frozenset())
    assert parse_filename("u:2,DT") == ("u", frozenset({"\\Draft", "\\Deleted"}))
