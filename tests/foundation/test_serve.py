"""`merpati serve` as a real process: listeners, limits, signals, TLS, first start."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import MerpatiServer, free_port, merpati_env, run_cli

ServerFactory = Callable[..., MerpatiServer]


def http_get(srv: MerpatiServer, path: str) -> tuple[int, bytes]:
    url = f"http://{srv.host}:{srv.ports['http']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_metrics_autoconfig(server_factory: ServerFactory) -> None:
    srv = server_factory(listeners=("http",))
    assert http_get(srv, "/healthz") == (200, b"ok\n")
    status, body = http_get(srv, "/metrics")
    assert status == 200 and b"merpati_connections_total" in body
    status, body = http_get(srv, "/mail/config-v1.1.xml")
    assert status == 200 and b"<clientConfig" in body
    status, body = http_get(srv, "/.well-known/mta-sts.txt")
    assert status == 200 and body.startswith(b"version: STSv1\r\n") and b"mx: localhost" in body
    assert http_get(srv, "/nothing")[0] == 404


def test_sigterm_exits_zero(server_factory: ServerFactory) -> None:
    srv = server_factory(listeners=("http",))
    assert srv.stop() == 0
    assert "server.stopped" in srv.log()


def test_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "m.toml"
        cfg.write_text(
            f'data_dir = "{tmp_path / "d"}"\n[listen]\nhttp = ["127.0.0.1:{port}"]\n'
            "smtp=[]\nsubmission=[]\nsubmissions=[]\nimap=[]\nimaps=[]\npop3=[]\npop3s=[]\n"
        )
        proc = run_cli("serve", config=cfg, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert f"cannot listen for http on 127.0.0.1:{port}: address already in use" in last
    assert "Traceback" not in proc.stderr


def test_connection_limit_per_ip(server_factory: ServerFactory) -> None:
    srv = server_factory("[limits]\nconnections_per_ip = 2\n", listeners=("http",))
    held = [socket.create_connection(srv.address("http")) for _ in range(2)]
    try:
        time.sleep(0.2)
        with socket.create_connection(srv.address("http")) as third:
            third.settimeout(5)
            assert third.recv(100).startswith(b"HTTP/1.1 503")
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert http_get(srv, "/healthz")[0] == 200


def test_sighup_reloads_certificate(server_factory: ServerFactory, tmp_path: Path) -> None:
    from merpati.tls import create_self_signed

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    create_self_signed("one.example", cert, key)
    srv = server_factory(listeners=("http", "imaps"), tls_extra=f'cert = "{cert}"\nkey = "{key}"\n')

    def peer_cn() -> str:
        ctx = MerpatiServer.client_tls_context()
        with socket.create_connection(srv.address("imaps")) as raw, ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
        from cryptography import x509

        return str(x509.load_der_x509_certificate(der).subject.rfc4514_string())

    assert "one.example" in peer_cn()
    create_self_signed("two.example", cert, key)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "two.example" not in peer_cn() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "two.example" in peer_cn()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_minimum_is_1_2(server_factory: ServerFactory) -> None:
    srv = server_factory(listeners=("http", "imaps"))
    ctx = MerpatiServer.client_tls_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(srv.address("imaps")) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw)


def test_first_start_creates_postmaster(tmp_path: Path) -> None:
    # The embedded default (no config at all) binds the fixed 2000+ ports: run it only if free.
    for port in (2025, 2587, 2465, 2143, 2993, 2110, 2995, 8025):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"port {port} is busy; the embedded default needs it")
    proc = subprocess.Popen(
        [sys.executable, "-m", "merpati", "serve"],
        cwd=tmp_path,
        env=merpati_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 8025), 0.2):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "postmaster@localhost" in out and "password:" in out
    assert (tmp_path / "merpati-data" / "accounts.db").exists()
    assert (tmp_path / "merpati-data" / "tls" / "cert.pem").exists()
    users = run_cli("user", "list", cwd=tmp_path).stdout
    assert "postmaster@localhost" in users


def test_privileges_dropped_to_configured_user(server_factory: ServerFactory) -> None:
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    srv = server_factory(listeners=("http",), start=False)
    srv.config_path.write_text('user = "nobody"\n' + srv.config_path.read_text())
    srv.base.chmod(0o755)
    srv.start()
    assert srv.proc is not None
    status = Path(f"/proc/{srv.proc.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
    assert srv.data_dir.stat().st_uid == nobody.pw_uid
    assert http_get(srv, "/healthz")[0] == 200


def test_free_port_helper() -> None:
    assert 1024 < free_port() < 65536
