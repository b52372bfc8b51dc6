"""One accepted client connection, handed by the listener registry to a protocol handler.

The protocol's transport reads and writes through ``reader``/``writer`` and upgrades with
``start_tls()`` (asyncio's public ``StreamWriter.start_tls``; STARTTLS/STLS). Nothing read
before the upgrade survives it: ``start_tls`` drops what the stream reader holds, and the
caller drops its own buffer (rfc3207:4.2, rfc2595:4).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field


@dataclass(eq=False)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    listener: str  # "smtp", "submission", "imaps", ...
    peer_ip: str
    peer_port: int
    local_ip: str
    local_port: int
    tls_context: ssl.SSLContext | None  # for STARTTLS; None when the listener has none
    tls_version: str | None = None  # e.g. "TLSv1.3" once TLS is active
    tls_cipher: str | None = None
    id: str = field(default="")

    @property
    def tls_active(self) -> bool:
        return self.tls_version is not None

    def note_tls(self) -> None:
        obj = self.writer.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
            self.tls_version = obj.version()
            cipher = obj.cipher()
            self.tls_cipher = cipher[0] if cipher else None

    def pause_reading(self) -> None:
        """Stop reading from the socket. Call it BEFORE writing the reply that tells the
        client to start TLS ("220 Ready", "+OK", "OK Begin"): otherwise the client's
        ClientHello can land in the plaintext stream buffer while ``StreamWriter.start_tls``
        drains, and the handshake never completes. ``start_tls`` resumes reading."""
        pause = getattr(self.writer.transport, "pause_reading", None)
        if callable(pause):
            pause()

    async def start_tls(self, timeout: float = 30.0) -> None:
        """Upgrade to TLS in place (server side). Raises on handshake failure.
        Call ``pause_reading()`` before sending the go-ahead reply."""
        if self.tls_context is None:
            raise RuntimeError("no TLS context for this listener")
        # rfc3207:4.2 / rfc2595:4 what a client pipelined after STARTTLS arrived in the clear
        # and must never be taken as a command under TLS; asyncio keeps the stream reader's
        # buffer across start_tls and offers no public way to empty it.
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        await asyncio.wait_for(
            self.writer.start_tls(self.tls_context, ssl_handshake_timeout=timeout), timeout
        )
        self.note_tls()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError, ssl.SSLError):
            pass
