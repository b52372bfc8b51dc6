"""TLS contexts for every listener and for the SMTP client.

The certificate and key come from ``[tls] cert``/``key`` or, when those are absent, from a
self-signed certificate for ``hostname`` and ``localhost`` created in the data dir on first
start. One server context is shared by all listeners; ``reload()`` (SIGHUP) loads the files
again into a new context that new connections and STARTTLS upgrades use, while established
connections keep theirs: certbot renewals without dropping anyone. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from merpati.config import Config
from merpati.errors import OperationalError

# Mozilla "intermediate" ciphers for TLS 1.2 (TLS 1.3 suites are not configurable here).
_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def self_signed_paths(data_dir: Path) -> tuple[Path, Path]:
    return data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"


def create_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    """An ECDSA P-256 certificate for ``hostname``, ``localhost`` and 127.0.0.1, 10 years."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        f.flush()
        os.fsync(f.fileno())
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)


class TLSManager:
    def __init__(self, config: Config) -> None:
        self.config = config
        if config.tls.cert is not None and config.tls.key is not None:
            self.cert_path, self.key_path = config.tls.cert, config.tls.key
        else:
            self.cert_path, self.key_path = self_signed_paths(config.data_dir)
            if not self.cert_path.exists() or not self.key_path.exists():
                create_self_signed(config.hostname, self.cert_path, self.key_path)
        self._server = self._load()

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(_TLS12_CIPHERS)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise OperationalError(
                f"cannot load TLS certificate {self.cert_path} / key {self.key_path}: {exc}"
            ) from None
        return ctx

    def server_context(self) -> ssl.SSLContext:
        return self._server

    def reload(self) -> None:
        """Load the certificate again (SIGHUP); on failure keep the old one and raise."""
        self._server = self._load()

    def client_context(self, verify: bool) -> ssl.SSLContext:
        if verify:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
