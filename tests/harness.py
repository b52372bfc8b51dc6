"""A real ``merpati serve`` for tests: subprocess, free loopback ports, temporary data dir.

Every protocol's end-to-end tests use this; nothing is mocked. The server runs as
``python -m merpati --config <tmp>/merpati.toml serve`` with the source tree on PYTHONPATH, and
CLI commands run the same way against the same data dir (the CLI works while the server runs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SRC = Path(__file__).resolve().parent.parent / "src"
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """``check()`` until it returns a true value without raising AssertionError; mail taken by
    SMTP reaches its mailbox a moment after the ``250`` (the intake journal delivers it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"not true within {timeout} s: {result!r}")
        time.sleep(interval)


def merpati_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MERPATI_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str,
    config: Path | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "merpati"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += list(args)
    proc = subprocess.run(
        cmd,
        input=input,
        capture_output=True,
        text=True,
        env=merpati_env(),
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"merpati {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


class MerpatiServer:
    def __init__(
        self,
        base: Path,
        extra_toml: str = "",
        host: str = "127.0.0.1",
        hostname: str = "localhost",
        listeners: tuple[str, ...] = LISTENERS,
        allow_plaintext_auth: bool = False,
        tls_extra: str = "",
        workers: int = 1,
    ) -> None:
        self.base = base
        self.host = host
        self.data_dir = base / "data"
        self.config_path = base / "merpati.toml"
        self.log_path = base / "server.log"
        self.ports = {name: free_port(host) for name in listeners}
        hp = f"[{host}]" if ":" in host else host
        listen = "\n".join(f'{n} = ["{hp}:{self.ports.get(n, 0)}"]' for n in self.ports)
        off = "\n".join(f"{n} = []" for n in LISTENERS if n not in self.ports)
        self.config_path.write_text(
            f'hostname = "{hostname}"\ndata_dir = "{self.data_dir}"\nworkers = {workers}\n\n'
            f"[listen]\n{listen}\n{off}\n\n"
            f"[tls]\nallow_plaintext_auth = {'true' if allow_plaintext_auth else 'false'}\n"
            f"{tls_extra}\n" + extra_toml
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: object = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while the server runs
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "merpati", "--config", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=merpati_env(),
            cwd=self.base,
        )
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"merpati serve exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"merpati serve did not listen in {timeout}s:\n{self.log()}")
            for name, port in list(pending.items()):
                with contextlib.suppress(OSError), socket.create_connection((self.host, port), 0.2):
                    del pending[name]
            if pending:
                time.sleep(0.05)
        # The port check above made connections of its own; let the server see them close.
        time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- helpers ---------------------------------------------------------------------------
    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, config=self.config_path, input=input, check=check, cwd=self.base)

    def add_user(self, address: str, password: str = "secret-password-1") -> str:
        domain = address.rsplit("@", 1)[1]
        if domain not in self.cli("domain", "list").stdout.split():
            self.cli("domain", "add", domain)
        self.cli("user", "add", address, "--password-stdin", input=password + "\n")
        return password

    def address(self, listener: str) -> tuple[str, int]:
        return self.host, self.ports[listener]

    @staticmethod
    def client_tls_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


@contextlib.contextmanager
def running_server(base: Path, **kwargs: object) -> Iterator[MerpatiServer]:
    server = MerpatiServer(base, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
