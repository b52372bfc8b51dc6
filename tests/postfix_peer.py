"""A private Postfix instance for interop tests: Postfix as Merpati's peer, in both directions.

It has a configuration directory, queue and log of its own under the test's temporary
directory, listens on one free loopback port, and is stopped again by the context manager.
The system's Postfix (if any) is not touched. Needs root (Postfix's ``master`` starts as root
and its daemons run as the ``postfix`` user) and the Debian package postfix, which ``make
test`` installs when it runs as root; ``unavailable()`` says why it cannot run otherwise.

    with PostfixPeer(tmp_path, relayhost="[127.0.0.1]:2025") as pf:   # pf.port, pf.log()
        ...
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from harness import free_port
from merpati.tls import create_self_signed

HOSTNAME = "postfix.peer.test"


def unavailable() -> str | None:
    if shutil.which("postfix") is None or not Path("/etc/postfix/master.cf").exists():
        return "Postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


def _master_cf(port: int) -> str:
    """Debian's master.cf with nothing chrooted (our queue directory is not a chroot jail),
    and smtpd on our port instead of 25."""
    out = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            out.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            continue
        fields[4] = "n"
        out.append(" ".join(fields))
    out.append(f"127.0.0.1:{port} inet n - n - - smtpd")
    return "\n".join(out) + "\n"


class PostfixPeer:
    """``relayhost``: where Postfix sends everything not for ``domain`` (Postfix as a client
    of Merpati). ``domain``: a domain Postfix takes mail for and puts into a Maildir under
    ``maildir`` (Postfix as the server Merpati delivers to)."""

    def __init__(self, base: Path, relayhost: str = "", domain: str = "") -> None:
        self.base = base / "postfix"
        self.port = free_port()
        self.conf = self.base / "conf"
        self.queue = self.base / "queue"
        self.maildir = self.base / "mail"
        self.log_path = self.base / "postfix.log"
        self.relayhost = relayhost
        self.domain = domain

    def _main_cf(self) -> str:
        cert, key = self.conf / "cert.pem", self.conf / "key.pem"
        create_self_signed(HOSTNAME, cert, key)
        postfix = pwd.getpwnam("postfix")
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.base / 'data'}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"myhostname = {HOSTNAME}",
            "mydestination =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            f"maillog_file = {self.log_path}",
            f"maillog_file_prefixes = {self.base}",
            "smtputf8_enable = yes",
            "biff = no",
            "disable_dns_lookups = yes",
            "smtp_host_lookup = native",
            "smtpd_peername_lookup = no",
            f"relayhost = {self.relayhost}",
            # Merpati's side of TLS: Postfix as a client insists on it (no verification: the
            # server's certificate is self-signed), and offers it as a server.
            "smtp_tls_security_level = encrypt",
            "smtp_tls_mandatory_protocols = >=TLSv1.2",
            "smtp_tls_loglevel = 1",
            f"smtpd_tls_cert_file = {cert}",
            f"smtpd_tls_key_file = {key}",
            "smtpd_tls_security_level = may",
            "smtpd_tls_loglevel = 1",
            "smtpd_tls_received_header = yes",
            # Nothing retried for long: a test reads the verdict from the log.
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
            "bounce_queue_lifetime = 0",
            "maximal_queue_lifetime = 1m",
        ]
        if self.domain:
            lines += [
                f"virtual_mailbox_domains = {self.domain}",
                f"virtual_mailbox_base = {self.maildir}",
                f"virtual_mailbox_maps = static:{self.domain}/",
                f"virtual_uid_maps = static:{postfix.pw_uid}",
                f"virtual_gid_maps = static:{postfix.pw_gid}",
            ]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> PostfixPeer:
        self.base.mkdir(parents=True)
        for d in (self.base, *self.base.parents):  # the postfix user must reach its queue
            if d == Path("/"):
                break
            d.chmod(d.stat().st_mode | 0o711)
        self.conf.mkdir()
        self.queue.mkdir(mode=0o755)
        (self.base / "data").mkdir()
        shutil.chown(self.base / "data", "postfix")
        self.maildir.mkdir()
        shutil.chown(self.maildir, "postfix", "postfix")
        (self.conf / "master.cf").write_text(_master_cf(self.port))
        (self.conf / "main.cf").write_text(self._main_cf())
        self._postfix("check", check=False)
        self._postfix("start")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Postfix did not listen:\n{self.log()}") from None
                time.sleep(0.1)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._postfix("stop", check=False)

    def _postfix(self, command: str, check: bool = True) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), command], check=check, capture_output=True)

    def flush(self) -> None:
        """Try the deferred mail again now (``postqueue -f``)."""
        subprocess.run(["postqueue", "-c", str(self.conf), "-f"], check=False, capture_output=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def delivered(self) -> list[bytes]:
        """The messages Postfix put into the one Maildir of ``domain`` (every recipient of
        that domain shares it)."""
        out = []
        for sub in ("new", "cur"):
            folder = self.maildir / self.domain / sub
            if folder.is_dir():
                out += [p.read_bytes() for p in sorted(folder.iterdir())]
        return out
