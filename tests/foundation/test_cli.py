"""The `merpati` command line: exit codes, one-line errors, every account command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import run_cli


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "merpati.toml"
    p.write_text(f'hostname = "mail.example.org"\ndata_dir = "{tmp_path / "data"}"\n')
    return p


def one_line_error(proc: object, code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    err = proc.stderr.strip()  # type: ignore[attr-defined]
    assert needle in err
    assert "\n" not in err and "Traceback" not in err


def test_check_config(cfg: Path, tmp_path: Path) -> None:
    assert "config OK" in run_cli("check-config", config=cfg).stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nrecipients = 'many'\n")
    one_line_error(run_cli("check-config", config=bad, check=False), 2, "limits.recipients")
    one_line_error(
        run_cli("check-config", config=tmp_path / "missing.toml", check=False), 2, "cannot read"
    )


def test_config_from_environment(cfg: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from harness import merpati_env

    env = merpati_env() | {"MERPATI_CONFIG": str(cfg)}
    out = subprocess.run(
        [sys.executable, "-m", "merpati", "check-config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "mail.example.org" in out.stdout


def test_usage_error_exit_2(cfg: Path) -> None:
    proc = run_cli("user", "frobnicate", config=cfg, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_domain_user_alias_commands(cfg: Path) -> None:
    assert "added" in run_cli("domain", "add", "Example.ORG", config=cfg).stdout
    one_line_error(run_cli("domain", "add", "example.org", config=cfg, check=False), 1, "exists")
    one_line_error(run_cli("domain", "add", "bad..dom", config=cfg, check=False), 1, "bad domain")
    assert run_cli("domain", "list", config=cfg).stdout.split() == ["example.org"]

    out = run_cli("user", "add", "alice@example.org", config=cfg).stdout
    assert "password:" in out and "shown once" in out
    run_cli(
        "user",
        "add",
        "bob@example.org",
        "--password-stdin",
        "--quota",
        "1MB",
        config=cfg,
        input="bobs-password\n",
    )
    one_line_error(
        run_cli(
            "user",
            "add",
            "alice@example.org",
            "--password-stdin",
            config=cfg,
            input="x\n",
            check=False,
        ),
        1,
        "already exists",
    )
    one_line_error(
        run_cli(
            "user",
            "add",
            "carol@nowhere.test",
            "--password-stdin",
            config=cfg,
            input="x\n",
            check=False,
        ),
        1,
        "unknown domain",
    )
    one_line_error(
        run_cli(
            "user",
            "add",
            "not-an-address",
            "--password-stdin",
            config=cfg,
            input="x\n",
            check=False,
        ),
        1,
        "bad address",
    )
    listing = run_cli("user", "list", config=cfg).stdout
    assert "alice@example.org" in listing and "bob@example.org  quota=1000000" in listing
    assert (
        "password of"
        in run_cli(
            "user", "passwd", "bob@example.org", "--password-stdin", config=cfg, input="new-pass\n"
        ).stdout
    )
    one_line_error(
        run_cli("domain", "remove", "example.org", config=cfg, check=False), 1, "still has"
    )

    run_cli("alias", "add", "team@example.org", "alice@example.org", "bob@example.org", config=cfg)
    run_cli("alias", "add", "@example.org", "alice@example.org", config=cfg)
    one_line_error(
        run_cli("alias", "add", "bob@example.org", "team@example.org", config=cfg, check=False),
        1,
        "alias loop",
    )
    aliases = run_cli("alias", "list", config=cfg).stdout
    assert "team@example.org -> alice@example.org, bob@example.org" in aliases
    assert "@example.org -> alice@example.org" in aliases
    run_cli("alias", "remove", "team@example.org", config=cfg)
    one_line_error(
        run_cli("alias", "remove", "team@example.org", config=cfg, check=False), 1, "unknown alias"
    )

    run_cli("user", "remove", "alice@example.org", config=cfg)
    run_cli("user", "remove", "bob@example.org", config=cfg)
    one_line_error(
        run_cli("user", "remove", "bob@example.org", config=cfg, check=False), 1, "unknown account"
    )
    run_cli("domain", "remove", "example.org", config=cfg)
    assert run_cli("domain", "list", config=cfg).stdout.strip() == ""


def test_password_stdin_required_when_asked(cfg: Path) -> None:
    run_cli("domain", "add", "example.org", config=cfg)
    proc = run_cli(
        "user", "add", "a@example.org", "--password-stdin", config=cfg, input="", check=False
    )
    one_line_error(proc, 2, "no password")


def test_quickstart_writes_config_and_prints_everything(tmp_path: Path) -> None:
    proc = run_cli("quickstart", "alice@example.org", "--hostname", "mx.example.org", cwd=tmp_path)
    out = proc.stdout
    assert (tmp_path / "merpati.toml").exists()
    assert "password:" in out
    dns, settings = out.split("client settings")
    assert "MX\t10 mx.example.org." in dns
    assert "v=spf1 mx -all" in dns
    assert "_imaps._tcp" in dns and "DKIM1" in dns and "v=DMARC1" in dns
    assert "IMAP" in settings and "2993" in settings and "alice@example.org" in settings
    # The config it wrote is used by later commands in the same directory.
    assert "alice@example.org" in run_cli("user", "list", cwd=tmp_path).stdout
    assert os.stat(tmp_path / "merpati-data").st_mode & 0o077 == 0
