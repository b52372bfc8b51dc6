"""Binding listeners and accepting connections for the protocol handlers.

For each configured listener address this binds one asyncio server and, per accepted
connection: enforces ``[limits] connections`` and ``connections_per_ip`` (across the
processes of the server with ``workers``: ``merpati.server.board``; the protocol's
``busy_reply`` is written and the connection closed), completes implicit TLS (always with the
TLS manager's current context, so a SIGHUP reload applies to new connections), wraps the
streams in a ``Connection`` and runs the protocol's handler as a tracked task.

Invariant: an exception escaping a handler is logged (type only, never its text to the
client) and closes only that connection.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable

from merpati.app import App
from merpati.config import ListenAddress
from merpati.errors import OperationalError
from merpati.server.board import ConnectionBoard
from merpati.server.connection import Connection
from merpati.server.registry import ListenerSpec

_ids = itertools.count(1)


class Acceptor:
    """Owns every bound server and every live connection task."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.per_ip: Counter[str] = Counter()
        self.bound: dict[str, list[tuple[str, int]]] = {}
        self.by_name: dict[str, list[asyncio.Server]] = {}
        self.id_prefix = ""  # "w1." in worker 1, so log ids stay unique across processes
        self.board: ConnectionBoard | None = None  # with workers: the others' connections

    def _implicit_context(self) -> ssl.SSLContext:
        """A context whose SNI callback swaps in the TLS manager's current context."""
        tls = self.app.tls
        dispatcher = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        dispatcher.minimum_version = ssl.TLSVersion.TLSv1_2
        dispatcher.load_cert_chain(tls.cert_path, tls.key_path)

        def pick(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
            sock.context = tls.server_context()

        dispatcher.sni_callback = pick
        return dispatcher

    async def bind(
        self, name: str, spec: ListenerSpec, addresses: tuple[ListenAddress, ...]
    ) -> None:
        ssl_ctx = self._implicit_context() if spec.tls == "implicit" else None
        handler = self._make_callback(name, spec)
        for addr in addresses:
            try:
                server = await asyncio.start_server(
                    handler,
                    host=addr.host,
                    port=addr.port,
                    ssl=ssl_ctx,
                    ssl_handshake_timeout=30 if ssl_ctx else None,
                    reuse_address=True,
                    limit=256 * 1024,
                    backlog=1024,
                )
            except OSError as exc:
                raise OperationalError(_bind_error(name, addr, exc)) from None
            self._add(name, server)

    async def adopt(self, name: str, spec: ListenerSpec, socks: list[socket.socket]) -> None:
        """Serve on listening sockets bound by another process (merpati.server.workers)."""
        ssl_ctx = self._implicit_context() if spec.tls == "implicit" else None
        handler = self._make_callback(name, spec)
        for sock in socks:
            server = await asyncio.start_server(
                handler,
                sock=sock,
                ssl=ssl_ctx,
                ssl_handshake_timeout=30 if ssl_ctx else None,
                limit=256 * 1024,
            )
            self._add(name, server)

    def _add(self, name: str, server: asyncio.Server) -> None:
        self.servers.append(server)
        self.by_name.setdefault(name, []).append(server)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            self.bound.setdefault(name, []).append((host, port))

    def descriptors(self, names: tuple[str, ...]) -> dict[str, list[int]]:
        """The listening sockets of ``names``, by listener, to hand to worker processes."""
        return {
            name: [sock.fileno() for server in self.by_name[name] for sock in server.sockets]
            for name in names
            if name in self.by_name
        }

    def _make_callback(
        self, name: str, spec: ListenerSpec
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        app = self.app
        limits = app.config.limits
        connections = app.metrics.counter(
            "merpati_connections_total", "Accepted connections", ["listener"]
        )
        refused = app.metrics.counter(
            "merpati_connections_refused_total", "Connections refused by a limit", ["listener"]
        )
        active = app.metrics.gauge("merpati_connections_active", "Open connections", ["listener"])

        loop = asyncio.get_running_loop()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername") or ("?", 0)
            local = writer.get_extra_info("sockname") or ("?", 0)
            ip = str(peer[0])
            total, from_ip = self.board.others(ip) if self.board is not None else (0, 0)
            if (
                len(self.tasks) + total >= limits.connections
                or self.per_ip[ip] + from_ip >= limits.connections_per_ip
                or app.stopping.is_set()
            ):
                refused.labels(name).inc()
                app.log.event("connection.refused", listener=name, peer=ip, reason="limit")
                try:
                    writer.write(spec.busy_reply)
                    await asyncio.wait_for(writer.drain(), 5)
                except (OSError, TimeoutError, ssl.SSLError):
                    pass
                writer.close()
                return
            conn = Connection(
                reader=reader,
                writer=writer,
                listener=name,
                peer_ip=ip,
                peer_port=int(peer[1]),
                local_ip=str(local[0]),
                local_port=int(local[1]),
                tls_context=app.tls.server_context() if spec.tls == "starttls" else None,
                id=f"{self.id_prefix}{next(_ids):x}",
            )
            if spec.tls == "implicit":
                conn.note_tls()
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            self.per_ip[ip] += 1
            if self.board is not None:
                self.board.publish(ip, self.per_ip[ip], len(self.tasks))
            connections.labels(name).inc()
            active.labels(name).inc()
            started = loop.time()
            try:
                await spec.handler(conn)
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # one session's bug must not take others down
                app.log.event(
                    "connection.error", listener=name, peer=ip, id=conn.id, error=type(exc).__name__
                )
            finally:
                app.log.event(
                    "connection.closed",
                    listener=name,
                    peer=ip,
                    id=conn.id,
                    tls=conn.tls_version,
                    seconds=f"{loop.time() - started:.3f}",
                )
                active.labels(name).dec()
                self.per_ip[ip] -= 1
                left = self.per_ip[ip]
                if left <= 0:
                    del self.per_ip[ip]
                self.tasks.discard(task)
                if self.board is not None:
                    self.board.publish(ip, max(left, 0), len(self.tasks))
                await conn.close()

        return on_connect

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.close()

    async def drain(self, grace: float) -> None:
        """Let live sessions finish for up to ``grace`` seconds, then cancel the rest."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass


def _bind_error(name: str, addr: ListenAddress, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need root, or CAP_NET_BIND_SERVICE)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "address not available on this machine"
    else:
        why = exc.strerror or str(exc)
    return f"cannot listen for {name} on {addr}: {why}"
