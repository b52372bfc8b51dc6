"""The admin HTTP listener: ``/healthz``, Prometheus ``/metrics``, mail client autoconfig and
the MTA-STS policy file.

A deliberately small HTTP/1.1 responder (one request per connection, GET/HEAD only, request
head bounded to 8 KiB, 10 s to send it): it serves operators and mail clients, not browsers,
so a web framework would be weight without purpose. Autoconfig follows Thunderbird's
``config-v1.1.xml`` format, built from the listeners actually configured.
"""

from __future__ import annotations

import asyncio
from xml.sax.saxutils import escape

from merpati.app import App
from merpati.server.connection import Connection
from merpati.server.registry import ListenerSpec

MAX_REQUEST_HEAD = 8 * 1024
REQUEST_TIMEOUT = 10.0


def _response(status: str, body: bytes, ctype: str, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\n\r\n"
    ).encode()
    return head if head_only else head + body


def autoconfig_xml(app: App) -> bytes:
    cfg = app.config
    host = escape(cfg.hostname)
    servers: list[str] = []

    def server(kind: str, proto: str, listener: str, socket_type: str) -> None:
        addrs = getattr(cfg.listen, listener)
        if not addrs:
            return
        servers.append(
            f'  <{kind} type="{proto}">\n    <hostname>{host}</hostname>\n'
            f"    <port>{addrs[0].port}</port>\n    <socketType>{socket_type}</socketType>\n"
            "    <authentication>password-cleartext</authentication>\n"
            "    <username>%EMAILADDRESS%</username>\n"
            f"  </{kind}>"
        )

    server("incomingServer", "imap", "imaps", "SSL")
    server("incomingServer", "imap", "imap", "STARTTLS")
    server("incomingServer", "pop3", "pop3s", "SSL")
    server("incomingServer", "pop3", "pop3", "STARTTLS")
    server("outgoingServer", "smtp", "submissions", "SSL")
    server("outgoingServer", "smtp", "submission", "STARTTLS")
    domains = "\n".join(f"    <domain>{escape(d)}</domain>" for d in app.accounts.domains())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
        f'  <emailProvider id="{host}">\n{domains}\n'
        f"    <displayName>Merpati at {host}</displayName>\n"
        + "\n".join(servers)
        + "\n  </emailProvider>\n</clientConfig>\n"
    )
    return body.encode()


async def _serve(app: App, conn: Connection) -> None:
    try:
        head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        return
    if len(head) > MAX_REQUEST_HEAD:
        conn.writer.write(_response("431 Request Header Fields Too Large", b"", "text/plain"))
        return
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        conn.writer.write(_response("405 Method Not Allowed", b"GET only\n", "text/plain"))
        return
    head_only = parts[0] == b"HEAD"
    path = parts[1].split(b"?", 1)[0]
    if path == b"/healthz":
        out = _response("200 OK", b"ok\n", "text/plain", head_only)
    elif path == b"/metrics":
        out = _response(
            "200 OK", app.metrics.render(), "text/plain; version=0.0.4; charset=utf-8", head_only
        )
    elif path == b"/.well-known/mta-sts.txt":
        # rfc8461:3.2 the policy; it must be reachable over HTTPS as mta-sts.DOMAIN (a
        # reverse proxy with a certificate for that name forwards to this listener).
        from merpati.trust.records import mta_sts_policy

        out = _response("200 OK", mta_sts_policy(app.config).encode(), "text/plain", head_only)
    elif path in (b"/mail/config-v1.1.xml", b"/.well-known/autoconfig/mail/config-v1.1.xml"):
        out = _response("200 OK", autoconfig_xml(app), "application/xml", head_only)
    else:
        out = _response("404 Not Found", b"not found\n", "text/plain", head_only)
    conn.writer.write(out)
    try:
        await asyncio.wait_for(conn.writer.drain(), REQUEST_TIMEOUT)
    except (TimeoutError, OSError):
        pass


def http_listener(app: App) -> ListenerSpec:
    async def handler(conn: Connection) -> None:
        await _serve(app, conn)

    return ListenerSpec(
        handler=handler,
        tls="none",
        busy_reply=_response("503 Service Unavailable", b"busy\n", "text/plain"),
    )
