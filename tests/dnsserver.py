"""A small authoritative DNS server for tests, written with dnspython: UDP and TCP on one
loopback port, answering from an in-memory table of records. It runs in threads so that both
in-process code and ``merpati serve`` subprocesses can query it.

    with DNSServer({("b.test", "MX"): ["10 mx1.b.test."], ("mx1.b.test", "A"): ["127.0.0.3"]})
        as dns: ...   # dns.host, dns.port

Names under a zone it knows that have no records get NXDOMAIN (with ``everything=True``:
every unknown name, as if it served the whole tree), others REFUSED; a known name without the
asked type gets an empty NOERROR answer (NODATA). Records can be changed while it runs:
``set`` replaces a name's records of a type (zone-file text), ``add`` appends to them (a TXT
value given raw, split into 255-byte strings here); ``servfail(name)`` makes a name answer
SERVFAIL and ``drop(name)`` never answer (a timeout). A UDP answer over 512 octets is sent
truncated (TC), so resolvers ask again over TCP as with a real server. Every question is
kept in ``queries``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

Records = dict[tuple[str, str], list[str]]


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def txt_rdata(value: str) -> str:
    """Zone-file text for a TXT value, split into quoted strings of at most 255 bytes."""
    raw = value.encode("utf-8")
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode("utf-8").replace('"', '\\"') + '"' for c in chunks)


class DNSServer:
    def __init__(
        self,
        records: Records | None = None,
        host: str = "127.0.0.1",
        ttl: int = 60,
        everything: bool = False,
    ) -> None:
        self.host = host
        self.ttl = ttl
        self.everything = everything
        self.port = 0
        self.records: Records = {}
        self.failing: set[str] = set()
        self.dropped: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        for (name, rdtype), values in (records or {}).items():
            self.set(name, rdtype, values)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    def set(self, name: str, rdtype: str, values: list[str]) -> None:
        with self._lock:
            self.records[(_norm(name), rdtype.upper())] = list(values)

    def add(self, name: str, rdtype: str, *values: str) -> None:
        kind = rdtype.upper()
        texts = [txt_rdata(v) if kind == "TXT" else v for v in values]
        with self._lock:
            self.records.setdefault((_norm(name), kind), []).extend(texts)

    def add_txt(self, name: str, value: str) -> None:
        self.add(name, "TXT", value)

    def remove(self, name: str, rdtype: str) -> None:
        with self._lock:
            self.records.pop((_norm(name), rdtype.upper()), None)

    def servfail(self, name: str) -> None:
        with self._lock:
            self.failing.add(_norm(name))

    def drop(self, name: str) -> None:
        with self._lock:
            self.dropped.add(_norm(name))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _zones(self) -> set[str]:
        return {n for (n, t) in self.records if t in ("MX", "SOA", "NS")} | {
            n.split(".", 1)[1] for (n, _) in self.records if "." in n
        }

    def answer(self, wire: bytes) -> bytes | None:
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
        name = _norm(q.name.to_text())
        rdtype = dns.rdatatype.to_text(q.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            if name in self.dropped:
                return None
            if name in self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            values = self.records.get((name, rdtype))
            known = any(n == name for (n, _) in self.records)
            zones = self._zones()
        if values:
            response.answer.append(dns.rrset.from_text(q.name, self.ttl, "IN", rdtype, *values))
        elif not known:
            in_zone = self.everything or any(name == z or name.endswith("." + z) for z in zones)
            response.set_rcode(dns.rcode.NXDOMAIN if in_zone else dns.rcode.REFUSED)
        return response.to_wire()

    def start(self) -> DNSServer:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            self._udp, self._tcp, self.port = udp, tcp, port
            break
        else:
            raise RuntimeError("no free port for the test DNS server")
        for target in (self._serve_udp, self._serve_tcp):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _serve_udp(self) -> None:
        assert self._udp is not None
        self._udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                wire, addr = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            out = self.answer(wire)
            if out is not None:
                if len(out) > 512:  # rfc1035:4.2.1 over UDP: truncated, ask again over TCP
                    msg = dns.message.from_wire(out)
                    msg.flags |= dns.flags.TC
                    msg.answer = []
                    out = msg.to_wire()
                with contextlib.suppress(OSError):
                    self._udp.sendto(out, addr)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        self._tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    head = conn.recv(2)
                    if len(head) < 2:
                        return
                    (length,) = struct.unpack("!H", head)
                    wire = b""
                    while len(wire) < length:
                        chunk = conn.recv(length - len(wire))
                        if not chunk:
                            return
                        wire += chunk
                    out = self.answer(wire)
                    if out is None:
                        return
                    conn.sendall(struct.pack("!H", len(out)) + out)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in (self._udp, self._tcp):
            if s is not None:
                s.close()

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
