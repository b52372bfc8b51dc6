"""`merpati dns DOMAIN [--json] [--check]` through the real CLI, and records_for()."""

from __future__ import annotations

import json
from pathlib import Path

from merpati.config import ListenAddress, ListenConfig, load_config
from merpati.trust.records import records_for

from .dnsserver import DnsServer
from .helpers import merpati, merpati_process, publish, write_config


def test_zone_lines_and_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[listen]\npop3 = []\nsubmission = ["0.0.0.0:587"]')
    added = merpati(config, "domain", "add", "Example.TEST")
    assert added.returncode == 0, added.stderr
    out = merpati(config, "dns", "example.test")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    expected = [
        "example.test.\t3600\tIN\tMX\t10 mail.example.test.",
        'example.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"',
        '_dmarc.example.test.\t3600\tIN\tTXT\t"v=DMARC1; p=quarantine; '
        'rua=mailto:postmaster@example.test"',
        '_smtp._tls.example.test.\t3600\tIN\tTXT\t"v=TLSRPTv1; rua=mailto:postmaster@example.test"',
        "mta-sts.example.test.\t3600\tIN\tCNAME\tmail.example.test.",
        "_submission._tcp.example.test.\t3600\tIN\tSRV\t0 1 587 mail.example.test.",
        "_submissions._tcp.example.test.\t3600\tIN\tSRV\t0 1 2465 mail.example.test.",
        "_imap._tcp.example.test.\t3600\tIN\tSRV\t0 1 2143 mail.example.test.",
        "_imaps._tcp.example.test.\t3600\tIN\tSRV\t0 1 2993 mail.example.test.",
        "_pop3._tcp.example.test.\t3600\tIN\tSRV\t0 0 0 .",
        "_pop3s._tcp.example.test.\t3600\tIN\tSRV\t0 1 2995 mail.example.test.",
    ]
    for line in expected:
        assert line in lines
    dkim_lines = [x for x in lines if "._domainkey." in x]
    assert len(dkim_lines) == 2
    assert '"v=DKIM1; k=rsa; p=' in dkim_lines[0] and '"v=DKIM1; k=ed25519; p=' in dkim_lines[1]
    assert any(x.startswith('_mta-sts.example.test.\t3600\tIN\tTXT\t"v=STSv1; id=') for x in lines)
    assert ";   mode: testing" in lines and ";   mx: mail.example.test" in lines
    doc = json.loads(merpati(config, "dns", "example.test", "--json").stdout)
    assert doc["domain"] == "example.test"
    assert {r["type"] for r in doc["records"]} == {"MX", "TXT", "CNAME", "SRV"}
    assert "version: STSv1" in doc["mta_sts_policy"]["text"]
    assert doc["mta_sts_policy"]["url"] == "https://mta-sts.example.test/.well-known/mta-sts.txt"
    # Rotation publishes both sets until the old one is removed.
    rotated = merpati(config, "domain", "rotate-dkim", "example.test")
    assert rotated.returncode == 0, rotated.stderr
    out = merpati(config, "dns", "example.test")
    assert len([x for x in out.stdout.splitlines() if "._domainkey." in x]) == 4


def test_bad_domain_is_one_line_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    out = merpati_process(config, "dns", "../etc")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_check_against_dns(tmp_path: Path, dns_server: DnsServer) -> None:
    extra = f'[dns]\nnameservers = ["127.0.0.1:{dns_server.port}"]\ntimeout = "1s"'
    config = write_config(tmp_path, extra=extra)
    assert merpati(config, "domain", "add", "example.test").returncode == 0
    # Nothing published yet: everything missing, exit 1.
    out = merpati(config, "dns", "example.test", "--check")
    assert out.returncode == 1
    assert out.stdout.count("missing ") == 14
    publish(dns_server, config, "example.test")
    out = merpati(config, "dns", "example.test", "--check")
    assert out.returncode == 0, out.stdout
    assert "14 of 14 records as expected" in out.stdout
    # A different SPF record and a stale DKIM key are reported.
    dns_server.records.clear()
    publish_doc = json.loads(merpati(config, "dns", "example.test", "--json").stdout)
    for r in publish_doc["records"]:
        value = r["value"]
        if value == "v=spf1 mx -all":
            value = "v=spf1 a -all"
        if value.startswith("v=DMARC1"):
            value = "v=DMARC1;p=reject;rua=mailto:dmarc@elsewhere.test"  # stricter: fine
        if "k=rsa" in value:
            continue
        dns_server.add(r["name"], r["type"], value)
    out = merpati(config, "dns", "example.test", "--check", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    status = {(r["name"], r["type"], r["status"]) for r in doc["results"] if r["status"] != "ok"}
    assert status == {
        ("example.test.", "TXT", "different"),
        (
            next(r["name"] for r in publish_doc["records"] if "k=rsa" in r["value"]),
            "TXT",
            "missing",
        ),
    }


def test_check_with_dns_down(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[dns]\nnameservers = ["127.0.0.1:9"]\ntimeout = "1s"')
    out = merpati_process(config, "dns", "example.test", "--check")
    assert out.returncode == 1
    assert "error " in out.stdout and "Traceback" not in out.stderr


def test_records_for_without_keys_and_srv_ports(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config)
    recs = records_for(cfg, "example.test")
    assert not [r for r in recs if "_domainkey" in r.name]
    import dataclasses

    off = dataclasses.replace(
        cfg, listen=ListenConfig(imap=(), imaps=(ListenAddress("0.0.0.0", 993),))
    )
    srv = {r.name: r.value for r in records_for(off, "example.test") if r.type == "SRV"}
    assert srv["_imap._tcp.example.test."] == "0 0 0 ."
    assert srv["_imaps._tcp.example.test."] == "0 1 993 mail.example.test."
    long_txt = next(r for r in records_for(cfg, "example.test") if r.type == "TXT")
    assert long_txt.rdata() == '"v=spf1 mx -all"'


def test_dkim_list_and_remove(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert merpati(config, "domain", "add", "example.test").returncode == 0
    assert merpati(config, "domain", "rotate-dkim", "example.test").returncode == 0
    out = merpati(config, "dkim", "list", "example.test")
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[3] for r in rows] == ["signing", "signing", "published", "published"]
    old, new = rows[0][0], rows[2][0]
    refused = merpati(config, "dkim", "remove", "example.test", old)
    assert refused.returncode == 1 and "rotate first" in refused.stderr
    removed = merpati(config, "dkim", "remove", "example.test", new)
    assert removed.returncode == 0
    assert len(merpati(config, "dkim", "list", "example.test").stdout.splitlines()) == 3
    unknown = merpati(config, "dkim", "remove", "example.test", "r19990101")
    assert unknown.returncode == 1 and "no DKIM selector" in unknown.stderr


def test_trusted_networks_config_is_validated(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[policy]\ntrusted_networks = ["10.0.0.0/8", "nope"]')
    out = merpati(config, "dns", "example.test")
    assert out.returncode == 2 and "policy.trusted_networks" in out.stderr
    ok = write_config(tmp_path, extra='[policy]\ntrusted_networks = ["10.0.0.0/8", "::1"]')
    assert load_config(ok).policy.trusted_networks == ("10.0.0.0/8", "::1")


def test_dmarc_none_is_reported_as_different(tmp_path: Path, dns_server: DnsServer) -> None:
    extra = f'[dns]\nnameservers = ["127.0.0.1:{dns_server.port}"]\ntimeout = "1s"'
    config = write_config(tmp_path, extra=extra)
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=none")
    out = merpati(config, "dns", "example.test", "--check")
    assert out.returncode == 1
    assert "different _dmarc.example.test. TXT: found v=DMARC1; p=none" in out.stdout
