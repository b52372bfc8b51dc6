"""Merpati's configuration: one typed, immutable object loaded once at start.

The file is TOML (INTERFACE.md). Every section is a frozen dataclass below; every key is one
field, and its parser is chosen by the field's ``kind`` metadata (size, duration, address list...).
To add a key: add a field with a default. Unknown keys, wrong types and unusable values raise
``ConfigError`` with a message naming the key and the file; the CLI prints it as one line and
exits 2.

This module does no I/O apart from reading the file; it never creates the data directory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "ListenAddress",
    "find_config_path",
    "load_config",
    "parse_duration",
    "parse_size",
]


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key and the file."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_size(value: object) -> int:
    """``10MB`` -> 10_000_000, ``512KiB`` -> 524288, an integer -> itself (bytes)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MB or 512KiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as 10MB or 512KiB")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"cannot read {value!r} as a size (use e.g. 10MB, 512KiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_duration(value: object) -> float:
    """``30s``, ``5m``, ``4h``, ``5d`` -> seconds; a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 4h or 5d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 5m, 4h or 5d")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", value)
    if not m:
        raise ValueError(f"cannot read {value!r} as a duration (use e.g. 30s, 5m, 4h, 5d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def parse_listen_address(value: object) -> ListenAddress:
    """``0.0.0.0:25``, ``[::]:25``, ``localhost:2025``."""
    if not isinstance(value, str):
        raise ValueError('expected a string such as "0.0.0.0:25" or "[::]:25"')
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([A-Za-z0-9.\-]+):(\d{1,5})", value
    )
    if not m:
        raise ValueError(f"cannot read {value!r} as ADDRESS:PORT")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return ListenAddress(m.group(1), port)


def parse_host_port(value: object, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    if not isinstance(value, str):
        raise ValueError('expected a string such as "smtp.example.net:587"')
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d{1,5}))?", value)
    if m:
        return m.group(1), int(m.group(2) or default_port)
    if value.count(":") == 1:
        host, port = value.split(":")
        if not port.isdigit():
            raise ValueError(f"cannot read {value!r} as HOST:PORT")
        return host, int(port)
    if value.count(":") > 1:  # a bare IPv6 address
        return value, default_port
    return value, default_port


def _field(default: Any, kind: str = "", doc: str = "") -> Any:
    if isinstance(default, list | dict):
        raise TypeError("use tuples for list defaults")
    return field(default=default, metadata={"kind": kind, "doc": doc})


def _local(port: int) -> tuple[ListenAddress, ...]:
    return (ListenAddress("127.0.0.1", port),)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    smtp: tuple[ListenAddress, ...] = _field(_local(2025), "listen")
    submission: tuple[ListenAddress, ...] = _field(_local(2587), "listen")
    submissions: tuple[ListenAddress, ...] = _field(_local(2465), "listen")
    imap: tuple[ListenAddress, ...] = _field(_local(2143), "listen")
    imaps: tuple[ListenAddress, ...] = _field(_local(2993), "listen")
    pop3: tuple[ListenAddress, ...] = _field(_local(2110), "listen")
    pop3s: tuple[ListenAddress, ...] = _field(_local(2995), "listen")
    http: tuple[ListenAddress, ...] = _field(_local(8025), "listen")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert: Path | None = _field(None, "path")
    key: Path | None = _field(None, "path")
    allow_plaintext_auth: bool = _field(False, "bool")


@dataclass(frozen=True, slots=True)
class DNSConfig:
    nameservers: tuple[tuple[str, int], ...] = _field((), "hostports53")
    timeout: float = _field(5.0, "duration", "per query")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    port: int = _field(25, "port")
    relay_host: str = _field("", "str")
    relay_username: str = _field("", "str")
    relay_password: str = _field("", "str")
    retry: tuple[float, ...] = _field(
        (300.0, 600.0, 1200.0, 2400.0, 4800.0, 10800.0, 21600.0), "durations"
    )
    max_queue_time: float = _field(5 * 86400.0, "duration")
    delay_warning: float = _field(4 * 3600.0, "duration")
    concurrency: int = _field(20, "int", "outbound connections in total")
    connect_timeout: float = _field(30.0, "duration", "outbound TCP connect and TLS handshake")
    concurrency_per_domain: int = _field(4, "int", "outbound connections per destination")
    # Address the SMTP client binds to when connecting out (tests bind to a loopback alias).
    source_address: str = _field("", "str")
    received_show_auth_user: bool = _field(False, "bool", "name the SASL user in Received:")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    message_size: int = _field(50 * 1000**2, "size")
    recipients: int = _field(100, "int")
    connections_per_ip: int = _field(20, "int")
    connections: int = _field(2000, "int")
    # rfc5321:4.5.3.2 timeouts: 5 minutes for commands, 10 for the end of DATA.
    command_timeout: float = _field(300.0, "duration")
    data_timeout: float = _field(600.0, "duration")
    transaction_deadline: float = _field(1800.0, "duration", "a whole SMTP transaction")
    bad_commands: int = _field(10, "int", "errors before a session is closed")
    auth_failures: int = _field(5, "int", "failures per IP or account before the delay grows")
    imap_idle_timeout: float = _field(1800.0, "duration")  # rfc9051:5.4 at least 30 minutes
    imap_preauth_timeout: float = _field(60.0, "duration")
    imap_line_length: int = _field(64 * 1024, "size")
    imap_literal_size: int = _field(50 * 1000**2, "size", "also APPENDLIMIT")
    pop3_idle_timeout: float = _field(600.0, "duration")  # rfc1939:3 at least 10 minutes
    # rfc2449:6.5 minimum time between POP3 logins of one account; 0: none (not advertised).
    pop3_login_delay: float = _field(0.0, "duration")
    shutdown_grace: float = _field(10.0, "duration")
    # Accepted bytes waiting in the intake journal for their mailboxes; past it SMTP waits.
    intake_backlog: int = _field(64 * 1024**2, "size", "accepted bytes awaiting delivery")
    # The delivery agent is killed and started again when it has had deliveries to do and
    # answered none of them for this long (hung, not dead: a stuck disk, a stopped process).
    delivery_stall: float = _field(120.0, "duration", "a delivery agent answering nothing")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: str = _field("sqlite", "choice:sqlite,postgresql")
    dsn: str = _field("", "str")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Inbound trust and abuse controls (issue 8)."""

    dmarc_reject: bool = _field(True, "bool", "refuse p=reject failures with 550 5.7.1")
    dnsbl_zones: tuple[str, ...] = _field((), "strs")
    greylisting: bool = _field(False, "bool")
    greylist_delay: float = _field(300.0, "duration")
    connection_rate_per_ip: int = _field(60, "int", "new connections per minute per IP")
    outbound_rate_per_account: int = _field(500, "int", "messages per hour per account")
    srs_secret: str = _field("", "str", "empty: generated in data_dir")
    trusted_networks: tuple[str, ...] = _field(
        ("127.0.0.0/8", "::1/128"), "cidrs", "clients exempt from inbound checks and rate limits"
    )


@dataclass(frozen=True, slots=True)
class Config:
    hostname: str = _field("localhost", "hostname")
    data_dir: Path = _field(Path("merpati-data"), "path")
    user: str = _field("", "str")
    # Processes serving SMTP, IMAP and POP3 (merpati.server.workers); 0: one per CPU.
    workers: int = _field(1, "int", "processes serving SMTP, IMAP and POP3; 0: one per CPU")
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # Where this config came from; None is the embedded default.
    source: Path | None = field(default=None, metadata={"kind": "internal"})

    @property
    def embedded(self) -> bool:
        return self.source is None


def _parse_value(kind: str, value: object, base: Path) -> object:
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if value < 0 or (kind == "port" and value > 65535):
            raise ValueError(f"{value} is out of range")
        return value
    if kind == "size":
        return parse_size(value)
    if kind == "duration":
        return parse_duration(value)
    if kind == "durations":
        if not isinstance(value, list) or not value:
            raise ValueError("expected a non-empty list of durations")
        return tuple(parse_duration(v) for v in value)
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings")
        return tuple(value)
    if kind == "cidrs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError('expected a list of networks such as "192.0.2.0/24"')
        for v in value:
            ipaddress.ip_network(v, strict=False)  # raises ValueError naming the value
        return tuple(value)
    if kind == "listen":
        if not isinstance(value, list):
            raise ValueError('expected a list of "ADDRESS:PORT" strings')
        return tuple(parse_listen_address(v) for v in value)
    if kind == "hostports53":
        if not isinstance(value, list):
            raise ValueError('expected a list of "ADDRESS[:PORT]" strings')
        return tuple(parse_host_port(v, 53) for v in value)
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise ValueError("expected a path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if kind == "hostname":
        if not isinstance(value, str) or not re.fullmatch(
            r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?",
            value,
        ):
            raise ValueError("expected a host name such as mail.example.org")
        return value.rstrip(".").lower()
    if kind.startswith("choice:"):
        choices = kind.split(":", 1)[1].split(",")
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value
    raise AssertionError(f"unknown field kind {kind}")


def _build(cls: type[Any], table: dict[str, Any], prefix: str, where: str, base: Path) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        f = fields.get(key)
        if f is None or f.metadata.get("kind") == "internal":
            raise ConfigError(f"{where}: unknown key '{name}'")
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and isinstance(sub, type) and dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table ([{name}])")
            kwargs[key] = _build(sub, value, f"{name}.", where, base)
            continue
        try:
            kwargs[key] = _parse_value(str(f.metadata.get("kind", "")), value, base)
        except ValueError as exc:
            raise ConfigError(f"{where}: key '{name}': {exc}") from None
    return cls(**kwargs)


def load_config(path: Path | None) -> Config:
    """Load ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        return Config(data_dir=Path.cwd() / "merpati-data")
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file: {exc.strerror}") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    cfg: Config = _build(Config, table, "", where, base)
    if "data_dir" not in table:
        cfg = dataclasses.replace(cfg, data_dir=base / "merpati-data")
    if (cfg.tls.cert is None) != (cfg.tls.key is None):
        raise ConfigError(f"{where}: keys 'tls.cert' and 'tls.key' must be given together")
    if cfg.storage.backend == "postgresql":
        raise ConfigError(
            f"{where}: key 'storage.backend': the postgresql backend is not available yet"
        )
    return dataclasses.replace(cfg, source=path.resolve())


def find_config_path(explicit: str | None) -> Path | None:
    """--config, else $MERPATI_CONFIG, else ./merpati.toml if it exists, else None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MERPATI_CONFIG")
    if env:
        return Path(env)
    local = Path("merpati.toml")
    return local if local.exists() else None
