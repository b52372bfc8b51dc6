"""Shared helpers for the trust tests: run the ``merpati`` CLI, serve its records."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from merpati.cli.main import main

from .dnsserver import DnsServer

SRC = Path(__file__).resolve().parents[2] / "src"


def write_config(tmp: Path, hostname: str = "mail.example.test", extra: str = "") -> Path:
    path = tmp / "merpati.toml"
    path.write_text(f'hostname = "{hostname}"\ndata_dir = "{tmp / "data"}"\n{extra}\n')
    return path


def merpati(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI entry point in this process (fast); same result shape as a run."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--config", str(config), *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def merpati_process(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m merpati`` as its own process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "merpati", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def publish(server: DnsServer, config: Path, domain: str) -> dict[str, object]:
    """Serve exactly what `merpati dns DOMAIN --json` prints; return the document."""
    out = merpati(config, "dns", domain, "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    records = doc["records"]
    assert isinstance(records, list)
    for r in records:
        server.add(r["name"], r["type"], r["value"])
    return doc


def dkimpy_dnsfunc(server: DnsServer):  # type: ignore[no-untyped-def]
    """A dnsfunc for dkimpy's own verifier that asks the test server over UDP/TCP."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        response, _ = dns.query.udp_with_fallback(query, "127.0.0.1", timeout=2, port=server.port)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None

    return dnsfunc
