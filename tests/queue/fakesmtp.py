"""An in-process SMTP sink for the queue's tests: asyncio on 127.0.0.1, scriptable replies.

It records every connection and transaction; behaviour is set with plain attributes (the
greeting per connection number, EHLO keywords, a reply function for RCPT and for the end of
DATA, a TLS context for STARTTLS, credentials for AUTH).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Transaction:
    mail_from: str
    mail_params: list[str]
    rcpts: list[str]
    rcpt_params: list[list[str]]
    data: bytes
    tls: bool
    auth: str | None
    connection: int


@dataclass
class FakeSMTP:
    extensions: list[str] = field(
        default_factory=lambda: ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 10000000", "DSN"]
    )
    greeting: Callable[[int], bytes] = lambda n: b"220 fake.test ESMTP\r\n"
    rcpt_reply: Callable[[str], bytes] = lambda addr: b"250 2.1.5 ok\r\n"
    data_reply: Callable[[Transaction], bytes] = lambda t: b"250 2.0.0 queued\r\n"
    tls_context: ssl.SSLContext | None = None
    credentials: tuple[str, str] | None = None
    stall_after_data: float = 0.0
    broken_starttls: bool = False  # say 220 to STARTTLS, then hang up
    implicit_tls: bool = False  # TLS from the first byte (port 465 style)
    auth_mechanisms: str = "PLAIN LOGIN"
    no_ehlo: bool = False  # an old server: 502 to EHLO, HELO only
    greeting_delay: float = 0.0  # a tarpit: wait this long before the greeting
    transactions: list[Transaction] = field(default_factory=list)
    connections: int = 0
    max_open: int = 0
    commands: list[str] = field(default_factory=list)
    _open: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        ctx = self.tls_context if self.implicit_tls else None
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def received_by(self, rcpt: str) -> list[Transaction]:
        return [t for t in self.transactions if rcpt in t.rcpts]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._open += 1
        self.max_open = max(self.max_open, self._open)
        try:
            await self._session(number, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self._open -= 1
            writer.close()

    async def _session(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        greet = self.greeting(number)
        if self.greeting_delay:
            await asyncio.sleep(self.greeting_delay)
        if not greet:
            return  # close at once: the client sees a dropped connection
        writer.write(greet)
        await writer.drain()
        if not greet.startswith(b"220"):
            return
        tls = self.implicit_tls
        auth: str | None = None
        mail: tuple[str, list[str]] | None = None
        rcpts: list[tuple[str, list[str]]] = []
        bdat_chunks: list[bytes] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO" and self.no_ehlo:
                writer.write(b"502 5.5.1 EHLO not supported\r\n")
            elif verb == "HELO":
                writer.write(b"250 fake.test\r\n")
            elif verb == "EHLO":
                exts = list(self.extensions)
                if (self.tls_context is not None or self.broken_starttls) and not tls:
                    exts.append("STARTTLS")
                if self.credentials is not None:
                    exts.append("AUTH " + self.auth_mechanisms)
                lines = ["fake.test", *exts]
                out = "".join(
                    f"250{'-' if i < len(lines) - 1 else ' '}{ln}\r\n" for i, ln in enumerate(lines)
                )
                writer.write(out.encode())
            elif verb == "STARTTLS" and (self.tls_context is not None or self.broken_starttls):
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.drain()
                if self.broken_starttls or self.tls_context is None:
                    return
                await writer.start_tls(self.tls_context)
                tls = True
                continue
            elif verb == "AUTH" and self.credentials is not None:
                parts = text.split()
                if parts[1].upper() == "PLAIN":
                    raw = base64.b64decode(parts[2]).split(b"\0")
                    user, pw = raw[1].decode(), raw[2].decode()
                else:
                    writer.write(b"334 VXNlcm5hbWU6\r\n")
                    await writer.drain()
                    user = base64.b64decode(await reader.readline()).decode()
                    writer.write(b"334 UGFzc3dvcmQ6\r\n")
                    await writer.drain()
                    pw = base64.b64decode(await reader.readline()).decode()
                if (user, pw) == self.credentials:
                    auth = user
                    writer.write(b"235 2.7.0 ok\r\n")
                else:
                    writer.write(b"535 5.7.8 bad credentials\r\n")
            elif verb == "MAIL":
                if self.credentials is not None and auth is None:
                    writer.write(b"530 5.7.0 authentication required\r\n")
                else:
                    addr, _, params = text[10:].partition(">")
                    mail = (addr.lstrip("<"), params.split())
                    rcpts = []
                    writer.write(b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                addr, _, params = text[8:].partition(">")
                addr = addr.lstrip("<")
                reply = self.rcpt_reply(addr) if mail else b"503 5.5.1 MAIL first\r\n"
                if reply.startswith(b"2"):
                    rcpts.append((addr, params.split()))
                writer.write(reply)
            elif verb == "DATA":
                if not mail or not rcpts:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                    continue
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                chunks = []
                while True:
                    ln = await reader.readline()
                    if not ln:
                        return
                    if ln == b".\r\n":
                        break
                    chunks.append(ln[1:] if ln.startswith(b"..") else ln)
                t = Transaction(
                    mail[0],
                    mail[1],
                    [a for a, _ in rcpts],
                    [p for _, p in rcpts],
                    b"".join(chunks),
                    tls,
                    auth,
                    number,
                )
                if self.stall_after_data:
                    await asyncio.sleep(self.stall_after_data)
                reply = self.data_reply(t)
                if reply.startswith(b"2"):
                    self.transactions.append(t)
                writer.write(reply)
                mail, rcpts = None, []
            elif verb == "BDAT" and "CHUNKING" in self.extensions:
                parts = text.split()
                chunk = await reader.readexactly(int(parts[1]))
                bdat_chunks.append(chunk)
                if len(parts) < 3 or parts[2].upper() != "LAST":
                    writer.write(b"250 2.0.0 chunk ok\r\n")
                elif not mail or not rcpts:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                else:
                    t = Transaction(
                        mail[0],
                        mail[1],
                        [a for a, _ in rcpts],
                        [p for _, p in rcpts],
                        b"".join(bdat_chunks),
                        tls,
                        auth,
                        number,
                    )
                    bdat_chunks = []
                    reply = self.data_reply(t)
                    if reply.startswith(b"2"):
                        self.transactions.append(t)
                    writer.write(reply)
                    mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 unknown\r\n")
            await writer.drain()
