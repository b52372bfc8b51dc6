"""The client settings table printed by `serve` (first start) and `quickstart`."""

from __future__ import annotations

from merpati.config import Config

# (protocol, listener, security) in the order people look for them.
_ROWS = (
    ("IMAP", "imaps", "TLS"),
    ("IMAP", "imap", "STARTTLS"),
    ("POP3", "pop3s", "TLS"),
    ("POP3", "pop3", "STARTTLS"),
    ("SMTP (sending)", "submissions", "TLS"),
    ("SMTP (sending)", "submission", "STARTTLS"),
)


def client_settings(config: Config, username: str) -> str:
    rows = [("protocol", "server", "port", "security", "username")]
    for proto, listener, security in _ROWS:
        addrs = getattr(config.listen, listener)
        if addrs:
            rows.append((proto, config.hostname, str(addrs[0].port), security, username))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
