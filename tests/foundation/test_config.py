"""Config loading: every key typed, unknown keys and bad values named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from merpati.config import (
    ConfigError,
    ListenAddress,
    load_config,
    parse_duration,
    parse_size,
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "merpati.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "value"),
    [("10MB", 10_000_000), ("512KiB", 524_288), ("1GiB", 1 << 30), (42, 42), ("7", 7)],
)
def test_sizes(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "value"), [("30s", 30.0), ("5m", 300.0), ("4h", 14400.0), ("5d", 432000.0), (3, 3.0)]
)
def test_durations(text: object, value: float) -> None:
    assert parse_duration(text) == value


def test_embedded_default_ports() -> None:
    cfg = load_config(None)
    assert cfg.embedded
    assert cfg.hostname == "localhost"
    assert cfg.listen.smtp == (ListenAddress("127.0.0.1", 2025),)
    assert cfg.listen.imaps == (ListenAddress("127.0.0.1", 2993),)
    assert cfg.listen.http == (ListenAddress("127.0.0.1", 8025),)
    assert cfg.data_dir.name == "merpati-data"


def test_full_interface_example(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
hostname = "mail.example.org"
data_dir = "/var/lib/merpati"
user = "merpati"
[listen]
smtp = ["0.0.0.0:25", "[::]:25"]
submission = ["0.0.0.0:587"]
submissions = ["0.0.0.0:465"]
imap = ["0.0.0.0:143"]
imaps = ["0.0.0.0:993"]
pop3 = ["0.0.0.0:110"]
pop3s = ["0.0.0.0:995"]
http = ["127.0.0.1:8025"]
[tls]
cert = "/etc/letsencrypt/live/mail.example.org/fullchain.pem"
key = "/etc/letsencrypt/live/mail.example.org/privkey.pem"
allow_plaintext_auth = false
[dns]
nameservers = ["127.0.0.53:5353"]
[delivery]
port = 25
relay_host = ""
relay_username = ""
relay_password = ""
retry = ["5m", "10m", "20m", "40m", "80m", "3h", "6h"]
max_queue_time = "5d"
delay_warning = "4h"
[limits]
message_size = "50MB"
recipients = 100
connections_per_ip = 20
connections = 2000
[storage]
backend = "sqlite"
dsn = ""
""",
    )
    cfg = load_config(p)
    assert cfg.hostname == "mail.example.org"
    assert cfg.data_dir == Path("/var/lib/merpati")
    assert cfg.listen.smtp == (ListenAddress("0.0.0.0", 25), ListenAddress("::", 25))
    assert cfg.dns.nameservers == (("127.0.0.53", 5353),)
    assert cfg.delivery.retry[0] == 300.0 and cfg.delivery.retry[-1] == 21600.0
    assert cfg.limits.message_size == 50_000_000
    assert cfg.tls.cert == Path("/etc/letsencrypt/live/mail.example.org/fullchain.pem")
    assert not cfg.embedded


def test_config_is_immutable(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'hostname = "a.example"\n'))
    with pytest.raises(AttributeError):
        cfg.hostname = "b.example"  # type: ignore[misc]


def test_relative_data_dir_is_beside_the_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'data_dir = "state"\n'))
    assert cfg.data_dir == tmp_path.resolve() / "state"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hostnme = 'x'\n", "unknown key 'hostnme'"),
        ("[limits]\nmesage_size = 1\n", "unknown key 'limits.mesage_size'"),
        ("[limits]\nmessage_size = 'lots'\n", "key 'limits.message_size'"),
        ("[limits]\nrecipients = '100'\n", "key 'limits.recipients': expected a whole number"),
        ("[delivery]\nmax_queue_time = 'forever'\n", "key 'delivery.max_queue_time'"),
        ("[listen]\nsmtp = ['0.0.0.0']\n", "key 'listen.smtp'"),
        ("[listen]\nsmtp = ['1.2.3.4:99999']\n", "key 'listen.smtp'"),
        ("[tls]\nallow_plaintext_auth = 'yes'\n", "key 'tls.allow_plaintext_auth'"),
        ("[tls]\ncert = '/x.pem'\n", "'tls.cert' and 'tls.key'"),
        ("[storage]\nbackend = 'mysql'\n", "key 'storage.backend'"),
        ("listen = 3\n", "'listen' must be a table"),
        ("hostname = 'bad host'\n", "key 'hostname'"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert needle in msg
    assert str(p) in msg
    assert "\n" not in msg
