"""First SELECT after a restart: ``merpati serve`` started several times on one data directory
holding a large INBOX; after each start one client logs in and runs SELECT INBOX then
``UID FETCH 1:* (UID FLAGS)`` three times (the first SELECT is the cold one).

    python bench/bench_imap_cold.py --dir /tmp/merpati-cold --messages 100000 --restarts 3

The data directory is filled once (generated Maildir, ``merpati import``) and reused by later
runs with the same ``--dir``; ``--fresh-snapshot`` deletes the folder snapshot files before the
first start, so that start measures the very first SELECT (no snapshot file yet).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_imap_vs_dovecot import BIG, PASSWORD, _wait_port, login, make_message
from reference_dovecot import fill_maildir, free_port

ROOT = Path(__file__).resolve().parent.parent


def configure(base: Path, port: int) -> None:
    off = "".join(
        f"{n} = []\n"
        for n in ("smtp", "submission", "submissions", "imaps", "pop3", "pop3s", "http")
    )
    (base / "merpati.toml").write_text(
        f'data_dir = "{base / "data"}"\n[listen]\nimap = ["127.0.0.1:{port}"]\n{off}'
        "[tls]\nallow_plaintext_auth = true\n"
    )


def prepare(base: Path, count: int) -> tuple[list[str], dict[str, str]]:
    """The CLI prefix and environment for a data directory under ``base`` (filled if new)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cli = [sys.executable, "-m", "merpati", "--config", str(base / "merpati.toml")]
    if (base / "filled").exists():
        return cli, env
    base.mkdir(parents=True, exist_ok=True)
    src = base / "src"
    fill_maildir(src, BIG, [make_message(i) for i in range(count)], seen=True)
    configure(base, free_port())
    subprocess.run([*cli, "domain", "add", "example.org"], env=env, check=True)
    subprocess.run(
        [*cli, "user", "add", BIG, "--password-stdin"], input=PASSWORD.encode(), env=env, check=True
    )
    t = time.perf_counter()
    subprocess.run([*cli, "import", BIG, str(src / "mail/example.org/big")], env=env, check=True)
    print(f"import of {count} messages: {time.perf_counter() - t:.1f} s", flush=True)
    (base / "filled").touch()
    return cli, env


async def session(port: int) -> list[tuple[float, float]]:
    c = await login(port, BIG, None)
    out = []
    for _ in range(3):
        t = time.perf_counter()
        await c.cmd("SELECT INBOX")
        sel = time.perf_counter() - t
        t = time.perf_counter()
        await c.cmd("UID FETCH 1:* (UID FLAGS)")
        out.append((sel, time.perf_counter() - t))
    await c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=Path("/tmp/merpati-cold"))
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--fresh-snapshot", action="store_true")
    args = ap.parse_args()
    cli, env = prepare(args.dir, args.messages)
    if args.fresh_snapshot:
        for f in (args.dir / "data").rglob("merpati-snapshot-*"):
            f.unlink()
    firsts = []
    for n in range(args.restarts):
        port = free_port()
        configure(args.dir, port)
        quiet = None if os.environ.get("BENCH_STDERR") else subprocess.DEVNULL
        proc = subprocess.Popen([*cli, "serve"], env=env, stderr=quiet)
        try:
            _wait_port(port)
            rounds = asyncio.run(session(port))
        finally:
            proc.terminate()
            proc.wait(30)
        firsts.append(rounds[0][0])
        shown = "; ".join(f"SELECT {s * 1000:.0f} ms, FETCH {f * 1000:.0f} ms" for s, f in rounds)
        print(f"start {n + 1}: {shown}", flush=True)
    print(f"first SELECT after a restart: {', '.join(f'{x * 1000:.0f}' for x in firsts)} ms")


if __name__ == "__main__":
    main()
