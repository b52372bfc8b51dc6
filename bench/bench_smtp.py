"""SMTP intake: durable messages/s and latency, Merpati vs aiosmtpd (+fsync) vs Postfix.

Every server runs as its own process on 127.0.0.1; one load generator in this process (asyncio,
uvloop when installed) keeps N sessions busy, each sending 10 KB messages to R recipients with
the envelope pipelined (MAIL, RCPT..., DATA in one write) and the body in one write. A message
counts when its end-of-data reply is 250, which each server sends only after the message is
durable:

- merpati: the real ``merpati serve`` on the ``smtp`` listener, embedded store (Maildir files
  fsynced, SQLite index with synchronous=FULL), one account per recipient (hard links). The
  client is a stranger, so every message also gets the inbound SPF/DKIM/DMARC/ARC checks.
- merpati-auth: the same server, the sessions authenticate first (AUTH PLAIN as u0), so the
  inbound checks are skipped: the intake path alone, comparable with the servers below.
- aiosmtpd: aiosmtpd's SMTP server with a handler that writes each message to its own file,
  fsyncs it, renames it into place and fsyncs the directory (in a thread, so sessions overlap).
- merpati-memory / aiosmtpd-nofsync (only when named): the protocol cost alone, with the
  in-memory store and a handler that writes nothing; these are not durable.
- postfix: a private Postfix instance (``smtpd`` -> ``cleanup`` -> queue file, fsynced by
  Postfix) with every message put on hold, so only the intake is measured. Needs root and the
  Debian package postfix; skipped with a message otherwise.

    PYTHONPATH=src python bench/bench_smtp.py                       # all servers, 4 runs each
    PYTHONPATH=src python bench/bench_smtp.py --servers merpati --seconds 3
    PYTHONPATH=src python bench/bench_smtp.py --rounds 3            # interleaved; medians
    PYTHONPATH=src python bench/bench_smtp.py --smtp-source         # also Postfix's generator
    PYTHONPATH=src python bench/bench_smtp.py --servers merpati-auth --workers 2  # 2 processes
    PYTHONPATH=src python bench/bench_smtp.py --core                # the sans-I/O core alone

Latency is per message, from sending MAIL to reading the final 250 (p50/p99 in ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.example"
PASSWORD = "bench-password-1"
SIZE = 10_000
WORKERS = 1  # `workers` of the merpati servers (--workers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.recv(100)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def message(size: int = SIZE) -> bytes:
    head = b"From: load@client.example\r\nTo: you@bench.example\r\nSubject: bench\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstu\r\n"
    return head + (line * (size // len(line) + 1))[: size - len(head)]


# -- servers ---------------------------------------------------------------------------------


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


@contextmanager
def merpati_server(base: Path, recipients: int) -> Iterator[int]:
    port = free_port()
    data = base / "data"
    cfg = base / "merpati.toml"
    off = "\n".join(
        f"{n} = []" for n in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")
    )
    cfg.write_text(
        f'hostname = "mx.{DOMAIN}"\ndata_dir = "{data}"\nworkers = {WORKERS}\n'
        f'[listen]\nsmtp = ["127.0.0.1:{port}"]\n'
        f"{off}\n[tls]\nallow_plaintext_auth = true\n[limits]\nconnections_per_ip = 1000\n"
        "[policy]\nconnection_rate_per_ip = 1000000\noutbound_rate_per_account = 100000000\n"
    )
    cli = [sys.executable, "-m", "merpati", "--config", str(cfg)]
    subprocess.run([*cli, "domain", "add", DOMAIN], check=True, env=env(), capture_output=True)
    for i in range(recipients):
        subprocess.run(
            [*cli, "user", "add", f"u{i}@{DOMAIN}", "--password-stdin"],
            input=b"bench-password-1\n",
            check=True,
            env=env(),
            capture_output=True,
        )
    log = open(base / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen([*cli, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env())
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


AIOSMTPD_SERVER = r"""
import asyncio, itertools, os, sys
from aiosmtpd.smtp import SMTP

directory, port = sys.argv[1], int(sys.argv[2])
counter = itertools.count()

def write(data: bytes) -> None:
    n = next(counter)
    tmp, final = os.path.join(directory, f"{n}.tmp"), os.path.join(directory, f"{n}.eml")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        if directory != "-":
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, write, envelope.original_content)
        return "250 2.0.0 OK"

async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="aiosmtpd.bench", enable_SMTPUTF8=True),
        "127.0.0.1", port,
    )
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


@contextmanager
def aiosmtpd_server(base: Path, recipients: int, durable: bool = True) -> Iterator[int]:
    port = free_port()
    spool = base / "spool"
    spool.mkdir()
    where = str(spool) if durable else "-"
    script = base / "aiosmtpd_server.py"
    script.write_text(AIOSMTPD_SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), where, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


MERPATI_MEMORY_SERVER = r"""
import asyncio, sys
from pathlib import Path
from merpati.config import Config, LimitsConfig, PolicyConfig, TLSConfig
from merpati.delivery.deliver import make_deliverer
from merpati.mailstore.memory import MemoryMailStore
from merpati.server.listeners import Acceptor
from merpati.server.runtime import build_app
from merpati.config import ListenAddress
from merpati.smtp.server import mx_listener

data_dir, port, recipients = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

async def main() -> None:
    config = Config(hostname="mx.bench.example", data_dir=data_dir,
                    tls=TLSConfig(allow_plaintext_auth=True),
                    policy=PolicyConfig(connection_rate_per_ip=1000000,
                                        outbound_rate_per_account=100000000),
                    limits=LimitsConfig(connections_per_ip=1000))
    app = build_app(config)
    app.log.quiet = True
    app.accounts.add_domain("bench.example")
    app.mailstore = MemoryMailStore(app.accounts.quota)
    for i in range(recipients):
        app.accounts.add_account(f"u{i}@bench.example", "bench-password-1")
        await app.mailstore.create_account(f"u{i}@bench.example")
    app.deliver = make_deliverer(app)
    acceptor = Acceptor(app)
    await acceptor.bind("smtp", mx_listener(app), (ListenAddress("127.0.0.1", port),))
    await asyncio.Event().wait()

asyncio.run(main())  # the server runs on the stdlib loop, as merpati serve does
"""


@contextmanager
def merpati_memory_server(base: Path, recipients: int) -> Iterator[int]:
    """Protocol cost only: the in-memory store (nothing durable); for the aiosmtpd decision."""
    port = free_port()
    script = base / "merpati_memory.py"
    script.write_text(MERPATI_MEMORY_SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(base / "data"), str(port), str(recipients)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def postfix_available() -> str | None:
    if shutil.which("postfix") is None or shutil.which("postconf") is None:
        return "Postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


@contextmanager
def postfix_server(base: Path, recipients: int, hold: bool = True) -> Iterator[int]:
    port = free_port()
    base.chmod(0o755)  # Postfix's daemons run as the postfix user and must reach the queue
    conf = base / "postfix"
    queue = base / "postfix-queue"
    data = base / "postfix-data"
    conf.mkdir()
    queue.mkdir(mode=0o755)
    data.mkdir()
    shutil.chown(data, "postfix")
    master = Path("/etc/postfix/master.cf").read_text()
    master = master.replace("smtp      inet  n       -       y       -       -       smtpd", "")
    master += f"127.0.0.1:{port} inet n - n - - smtpd\n"
    (conf / "master.cf").write_text(master)
    if hold:
        restrictions = "check_recipient_access static:HOLD, permit_mynetworks, reject"
        delivery = ""
    else:  # delivered at once into a Maildir (virtual(8) fsyncs each file), as Merpati does
        mail = base / "postfix-mail"
        mail.mkdir()
        shutil.chown(mail, "postfix", "postfix")
        uid = pwd.getpwnam("postfix").pw_uid
        gid = pwd.getpwnam("postfix").pw_gid
        restrictions = "permit_mynetworks, reject"
        delivery = (
            f"virtual_mailbox_domains = {DOMAIN}\nvirtual_mailbox_base = {mail}\n"
            f"virtual_mailbox_maps = static:{DOMAIN}/\nvirtual_uid_maps = static:{uid}\n"
            f"virtual_gid_maps = static:{gid}\nvirtual_destination_concurrency_limit = 20\n"
            "virtual_mailbox_limit = 0\n"
        )
    (conf / "main.cf").write_text(
        delivery + "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        f"myhostname = postfix.{DOMAIN}\nmydestination =\ninet_interfaces = 127.0.0.1\n"
        "inet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n"
        f"smtpd_recipient_restrictions = {restrictions}\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject\n"
        f"maillog_file_prefixes = {base}\nmaillog_file = {base}/postfix.log\n"
        "default_process_limit = 100\nsmtpd_client_connection_count_limit = 0\n"
        "smtpd_client_connection_rate_limit = 0\nanvil_rate_time_unit = 60s\n"
        "smtpd_banner = $myhostname ESMTP\nbiff = no\nsmtp_host_lookup = native\n"
        "disable_dns_lookups = yes\nsmtpd_peername_lookup = no\n"
        "smtpd_soft_error_limit = 1000\nsmtpd_hard_error_limit = 1000\n"
        "message_size_limit = 52428800\nlocal_recipient_maps =\n"
    )
    run = ["postfix", "-c", str(conf)]
    subprocess.run([*run, "check"], check=False, capture_output=True)
    subprocess.run([*run, "start"], check=True, capture_output=True)
    try:
        wait_port(port, None)
        yield port
    finally:
        subprocess.run([*run, "stop"], check=False, capture_output=True)
        time.sleep(0.5)


# Where each durable server's mailboxes are (relative to its base), to see the backlog drain.
MAILBOXES = {
    "merpati": "data/mail",
    "merpati-auth": "data/mail",
    "postfix-deliver": "postfix-mail",
}


def maildir_files(root: Path) -> int:
    """Message files in the Maildirs under ``root`` (new/ and cur/)."""
    return sum(len(files) for d, _, files in os.walk(root) if os.path.basename(d) in ("new", "cur"))


SERVERS: dict[str, Callable[[Path, int], object]] = {
    "merpati": merpati_server,
    "merpati-auth": merpati_server,
    "aiosmtpd": aiosmtpd_server,
    "postfix": postfix_server,
    # Postfix delivering into a Maildir while it takes more, as Merpati does (not held).
    "postfix-deliver": lambda base, n: postfix_server(base, n, hold=False),
    # Protocol cost only, nothing durable: what the aiosmtpd-or-our-own decision compared.
    "merpati-memory": merpati_memory_server,
    "aiosmtpd-nofsync": lambda base, n: aiosmtpd_server(base, n, durable=False),
}


# -- load generator ---------------------------------------------------------------------------


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] != b"-":
            return line


async def session(
    port: int,
    rcpts: list[str],
    body: bytes,
    until: float,
    latencies: list[float],
    errors: list[str],
    auth: bool,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        greeting = await read_reply(reader)
        if not greeting.startswith(b"220"):
            raise RuntimeError(f"refused: {greeting!r}")
        writer.write(b"EHLO load.client.example\r\n")
        await read_reply(reader)
        sender = b"load@client.example"
        if auth:  # as the account u0: no inbound SPF/DKIM/DMARC checks, sender must be owned
            token = base64.b64encode(f"\0u0@{DOMAIN}\0{PASSWORD}".encode())
            writer.write(b"AUTH PLAIN " + token + b"\r\n")
            line = await read_reply(reader)
            if not line.startswith(b"235"):
                raise RuntimeError(f"AUTH failed: {line!r}")
            sender = f"u0@{DOMAIN}".encode()
        envelope = b"MAIL FROM:<" + sender + b">\r\n"
        envelope += b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts) + b"DATA\r\n"
        stuffed = body.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(envelope)
            for _ in range(1 + len(rcpts)):
                line = await read_reply(reader)
                if not line.startswith(b"250"):
                    errors.append(line.decode(errors="replace").strip())
            line = await read_reply(reader)
            if not line.startswith(b"354"):
                errors.append(line.decode(errors="replace").strip())
                writer.write(b"RSET\r\n")
                await read_reply(reader)
                continue
            writer.write(stuffed)
            line = await read_reply(reader)
            if line.startswith(b"250"):
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(line.decode(errors="replace").strip())
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
    finally:
        writer.close()


async def load(
    port: int, sessions: int, recipients: int, seconds: float, auth: bool = False
) -> dict[str, float]:
    rcpts = [f"u{i}@{DOMAIN}" for i in range(recipients)]
    body = message()
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    until = started + seconds
    await asyncio.gather(
        *(session(port, rcpts, body, until, latencies, errors, auth) for _ in range(sessions))
    )
    elapsed = time.monotonic() - started
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    if errors:
        print(f"    {len(errors)} refusals, e.g. {errors[0]}", file=sys.stderr)
    return {"msgs": len(lat), "rate": len(lat) / elapsed, "p50": pct(0.5), "p99": pct(0.99)}


def smtp_source(port: int, sessions: int, recipients: int, count: int) -> float:
    """Messages/s with Postfix's smtp-source as the load generator."""
    started = time.monotonic()
    cmd = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(SIZE)]
    cmd += ["-r", str(recipients), "-f", "load@client.example", "-t", f"u0@{DOMAIN}"]
    cmd += ["-M", "load.client.example", f"127.0.0.1:{port}"]
    subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return count / (time.monotonic() - started)


def core_speed(messages: int = 2000) -> None:
    """CPU of the sans-I/O session alone: pipelined 10 KB messages fed in 64 KB reads."""
    from merpati.smtp import replies
    from merpati.smtp.events import CLOSE, NEED_DATA, MailRequest, MessageRequest, RcptRequest
    from merpati.smtp.session import Session, Settings

    one = b"MAIL FROM:<a@client.example>\r\nRCPT TO:<u0@bench.example>\r\nDATA\r\n"
    one += message().replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n"
    data = b"EHLO x\r\n" + one * messages
    settings = Settings("mx.bench.example", "mx", "127.0.0.1", 50_000_000, 100, 10, False)
    started = time.process_time()
    session = Session(settings)
    done = 0
    for i in range(0, len(data), 65536):
        session.receive_data(data[i : i + 65536])
        while (event := session.next_event()) is not NEED_DATA and event is not CLOSE:
            if isinstance(event, MessageRequest):
                done += 1
                session.respond(replies.OK)
            elif isinstance(event, MailRequest | RcptRequest):
                session.respond(replies.OK)
        session.data_to_send()
    cpu = time.process_time() - started
    print(f"core: {done} messages in {cpu:.3f} s CPU, {cpu / done * 1e6:.0f} us per message")


# Sessions that authenticate first (as u0@bench.example): port 25 then skips the inbound
# SPF/DKIM/DMARC/ARC checks, which need DNS and are not part of what the others do.
AUTHENTICATED = {"merpati-auth", "merpati-memory"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--servers",
        nargs="+",
        default=["merpati", "merpati-auth", "aiosmtpd", "postfix"],
        choices=list(SERVERS),
    )
    ap.add_argument("--sessions", nargs="+", type=int, default=[1, 20])
    ap.add_argument("--recipients", nargs="+", type=int, default=[1, 5])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--smtp-source", action="store_true", help="also run Postfix's smtp-source")
    ap.add_argument("--core", action="store_true", help="only the session core's CPU cost")
    ap.add_argument("--workers", type=int, default=1, help="`workers` of the merpati servers")
    ap.add_argument("--rounds", type=int, default=1, help="repeat, interleaved; print medians")
    args = ap.parse_args()
    global WORKERS
    WORKERS = args.workers
    if args.core:
        core_speed()
        return 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(f"{'server':15} {'sessions':>8} {'rcpts':>5} {'msgs':>6} {'msg/s':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'in mailbox/s':>12}")  # fmt: skip
    results: dict[tuple[str, int, int], list[Row]] = {}
    servers = []
    for name in args.servers:
        if name.startswith("postfix") and (why := postfix_available()):
            print(f"{name:10} skipped: {why}")
            continue
        servers.append(name)
    # Round after round of every server, so that the machine's slower and faster moments fall
    # on all of them alike; the summary takes the median of the rounds.
    for _ in range(args.rounds):
        for name in servers:
            for row in run_server(name, args):
                results.setdefault((name, row.sessions, row.recipients), []).append(row)
    if args.rounds > 1:
        summary(results, args.rounds)
    return 0


@dataclass
class Row:
    sessions: int
    recipients: int
    rate: float
    p50: float
    p99: float
    in_mailbox: float | None


def run_server(name: str, args: argparse.Namespace) -> list[Row]:
    rows = []
    for recipients in args.recipients:
        with tempfile.TemporaryDirectory(prefix=f"bench-smtp-{name}-") as tmp:
            factory = SERVERS[name]
            with factory(Path(tmp), recipients) as port:  # type: ignore[attr-defined]
                auth = name in AUTHENTICATED
                warm = asyncio.run(load(port, 2, recipients, 0.5, auth))
                accepted = int(warm["msgs"])
                for sessions in args.sessions:
                    r = asyncio.run(load(port, sessions, recipients, args.seconds, auth))
                    accepted += int(r["msgs"])
                    in_mailbox = None
                    if (mailboxes := MAILBOXES.get(name)) is not None:
                        # Until every accepted copy is in its mailbox: the sustained rate.
                        start = time.monotonic()
                        want = accepted * recipients
                        while maildir_files(Path(tmp) / mailboxes) < want:
                            if time.monotonic() - start > 120:
                                break
                            time.sleep(0.01)
                        lag = time.monotonic() - start
                        in_mailbox = r["msgs"] / (args.seconds + lag)
                    row = Row(sessions, recipients, r["rate"], r["p50"], r["p99"], in_mailbox)
                    rows.append(row)
                    drained = f"{in_mailbox:>12.1f}" if in_mailbox is not None else ""
                    print(
                        f"{name:15} {sessions:>8} {recipients:>5} {r['msgs']:>6.0f} "
                        f"{r['rate']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {drained}",
                        flush=True,
                    )
                    if args.smtp_source and shutil.which("smtp-source"):
                        rate = smtp_source(port, sessions, recipients, 400)
                        print(f"{'':10} smtp-source: {rate:.1f} msg/s", flush=True)
    return rows


def summary(results: dict[tuple[str, int, int], list[Row]], rounds: int) -> None:
    """Medians of the rounds, the spread of msg/s, and merpati-auth against the others."""
    print(f"\nmedian of {rounds} rounds (min-max: the spread of msg/s):")
    print(f"{'server':15} {'sessions':>8} {'rcpts':>5} {'msg/s':>8} {'min-max':>13} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'in mailbox/s':>12}")  # fmt: skip
    medians: dict[tuple[str, int, int], float] = {}
    for (name, sessions, recipients), rows in results.items():
        rate = statistics.median(r.rate for r in rows)
        medians[(name, sessions, recipients)] = rate
        spread = f"{min(r.rate for r in rows):.0f}-{max(r.rate for r in rows):.0f}"
        boxes = [r.in_mailbox for r in rows if r.in_mailbox is not None]
        box = f"{statistics.median(boxes):>12.1f}" if boxes else ""
        print(
            f"{name:15} {sessions:>8} {recipients:>5} {rate:>8.1f} {spread:>13} "
            f"{statistics.median(r.p50 for r in rows):>8.1f} "
            f"{statistics.median(r.p99 for r in rows):>8.1f} {box}"
        )
    for other in ("aiosmtpd", "postfix"):
        ratios = [
            f"{sessions}s/{recipients}r {rate / medians[(other, sessions, recipients)]:.2f}x"
            for (name, sessions, recipients), rate in medians.items()
            if name == "merpati-auth" and (other, sessions, recipients) in medians
        ]
        if ratios:
            print(f"merpati-auth / {other}: " + ", ".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
