"""A private Dovecot on loopback, as the reference the IMAP and POP3 benchmarks compare with.

Dovecot (Debian's dovecot-imapd/dovecot-pop3d) runs from a config written into a temporary
directory, with its own passwd-file, serving Maildirs that the benchmark fills with the same
messages it gives Merpati. Plaintext on loopback for both servers, so neither pays TLS.
Needs root (Dovecot drops to the mail uid itself); ``available()`` says whether it can run.

    python bench/reference_dovecot.py      # smoke test: start, log in, list, stop
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> str | None:
    """None if Dovecot can run here, else the reason it cannot."""
    if not os.path.exists(DOVECOT):
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)"
    if os.geteuid() != 0:
        return "Dovecot needs root to start"
    try:
        pwd.getpwnam("dovenull")
    except KeyError:
        return "the dovenull user is missing (install the Debian package)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants (from /proc), in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        ppid = int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def maildir_path(base: Path, address: str) -> Path:
    local, domain = address.split("@")
    return base / "mail" / domain / local


def fill_maildir(base: Path, address: str, messages: list[bytes], seen: bool = False) -> None:
    """Write messages as Maildir files (cur/, with flags) the way a delivery agent would."""
    root = maildir_path(base, address)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    flags = "S" if seen else ""
    t = int(time.time())
    for i, data in enumerate(messages):
        (root / "cur" / f"{t}.M{i}P1.bench,S={len(data)}:2,{flags}").write_bytes(data)


class Dovecot:
    def __init__(self, base: Path, users: dict[str, str]) -> None:
        self.base = base
        self.users = users
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mail_user = pwd.getpwnam("nobody")

    def write_config(self) -> Path:
        b = self.base
        for d in ("run", "state", "home", "mail"):
            (b / d).mkdir(parents=True, exist_ok=True)
        (b / "passwd").write_text(
            "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items())
        )
        uid, gid = self.mail_user.pw_uid, self.mail_user.pw_gid
        conf = b / "dovecot.conf"
        conf.write_text(
            f"""
base_dir = {b}/run
state_dir = {b}/state
log_path = {b}/dovecot.log
protocols = imap pop3
protocol imap {{
  mail_max_userip_connections = 100000
}}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{b}/mail/%d/%n
mail_fsync = always
default_internal_user = dovecot
default_client_limit = 20000
default_process_limit = 20000
default_vsz_limit = 0
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {b}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={b}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  process_min_avail = 2
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap {{
  process_limit = 20000
}}
service imap-login {{
  client_limit = 20000
}}
"""
        )
        for root, dirs, files in os.walk(b / "mail"):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, gid)
        os.chown(b / "mail", uid, gid)
        os.chown(b / "home", uid, gid)
        return conf

    def start(self) -> None:
        conf = self.write_config()
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), 0.2) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not start: " + (self.base / "dovecot.log").read_text())

    def rss_kib(self) -> int:
        """Resident memory of the Dovecot master and all its children, in KiB."""
        assert self.proc is not None
        return tree_rss_kib(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([DOVECOT, "-c", str(self.base / "dovecot.conf"), "stop"], check=False)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _smoke() -> None:
    import imaplib
    import tempfile

    reason = available()
    if reason:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        fill_maildir(base, "u@example.org", [b"Subject: hi\r\n\r\nbody\r\n"] * 3)
        d = Dovecot(base, {"u@example.org": "pw"})
        d.start()
        try:
            m = imaplib.IMAP4("127.0.0.1", d.imap_port)
            m.login("u@example.org", "pw")
            print(m.select("INBOX"), m.uid("FETCH", "1:*", "(FLAGS)"))
            m.logout()
        finally:
            d.stop()


if __name__ == "__main__":
    _smoke()
