"""A small authoritative DNS server for tests: UDP and TCP on 127.0.0.1, answers from a dict.

``DnsServer.add(name, type, *rdata_texts)`` adds records (rdata in zone-file text, e.g. TXT
values quoted, long TXT split into 255-byte strings automatically); ``servfail(name)`` makes a
name answer SERVFAIL and ``drop(name)`` makes it never answer (a timeout). Unknown names are
NXDOMAIN; a known name without the asked type is NOERROR with no answers. Runs in one thread;
``stop()`` closes the sockets and joins it.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def txt_rdata(value: str) -> str:
    """Zone-file text for a TXT value, split into quoted strings of at most 255 bytes."""
    raw = value.encode("utf-8")
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode("utf-8").replace('"', '\\"') + '"' for c in chunks)


class DnsServer:
    def __init__(self) -> None:
        self.records: dict[tuple[dns.name.Name, int], list[dns.rdata.Rdata]] = {}
        self.names: set[dns.name.Name] = set()
        self.failing: set[dns.name.Name] = set()
        self.dropped: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        self._udp, self._tcp = self._bind()
        self.port: int = self._udp.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="test-dns", daemon=True)
        self._thread.start()

    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket on the same free port (retried: the TCP port of a free UDP
        port may be taken by someone else)."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError("no free port for the test DNS server")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, rdtype: str, *values: str) -> None:
        qname = dns.name.from_text(name)
        kind = dns.rdatatype.from_text(rdtype)
        with self._lock:
            self.names.add(qname)
            bucket = self.records.setdefault((qname, kind), [])
            for value in values:
                text = txt_rdata(value) if kind == dns.rdatatype.TXT else value
                bucket.append(dns.rdata.from_text(dns.rdataclass.IN, kind, text))

    def add_txt(self, name: str, value: str) -> None:
        self.add(name, "TXT", value)

    def servfail(self, name: str) -> None:
        with self._lock:
            self.failing.add(dns.name.from_text(name))

    def drop(self, name: str) -> None:
        with self._lock:
            self.dropped.add(dns.name.from_text(name))

    def _answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        with self._lock:
            self.queries.append((q.name.to_text(), dns.rdatatype.to_text(q.rdtype)))
            if q.name in self.dropped:
                return None
            if q.name in self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            rdatas = list(self.records.get((q.name, q.rdtype), []))
            known = q.name in self.names
        if rdatas:
            rrset = dns.rrset.from_rdata_list(q.name, 60, rdatas)
            response.answer.append(rrset)
        elif not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        sel.register(self._tcp, selectors.EVENT_READ, "tcp")
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.02):
                if key.data == "udp":
                    try:
                        wire, peer = self._udp.recvfrom(65535)
                    except OSError:
                        continue
                    out = self._answer(wire)
                    if out is not None:
                        if len(out) > 512:
                            msg = dns.message.from_wire(out)
                            msg.flags |= dns.flags.TC
                            msg.answer = []
                            out = msg.to_wire()
                        self._udp.sendto(out, peer)
                else:
                    try:
                        conn, _ = self._tcp.accept()
                    except OSError:
                        continue
                    self._serve_tcp(conn)
        sel.close()

    def _serve_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        try:
            head = self._recv_exact(conn, 2)
            wire = self._recv_exact(conn, struct.unpack("!H", head)[0])
            out = self._answer(wire)
            if out is not None:
                conn.sendall(struct.pack("!H", len(out)) + out)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ValueError("short read")
            data += chunk
        return data

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()
