"""devcloud's own PKI: a CA, a TLS server certificate and the token-signing key.

Made with `cryptography` on first start and kept in the state directory, so a restart keeps
the trust that clients already placed in `ca.pem` and the tokens they already hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


@dataclass
class SigningKey:
    """The RSA key that signs access tokens, with its self-signed certificate (for x5c)."""

    private_key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def kid(self) -> str:
        # Entra: kid == x5t == base64url(SHA-1 of the certificate DER), unpadded.
        return b64url(hashlib.sha1(self.der).digest())  # noqa: S324 - a thumbprint, not security

    def jwk(self, issuer: str) -> dict:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url_uint(numbers.n),
            "e": b64url_uint(numbers.e),
            "x5c": [base64.b64encode(self.der).decode("ascii")],
            "issuer": issuer,
        }


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    signing: SigningKey


def _ca(state_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = state_dir / "ca-key.pem", state_dir / "ca.pem"
    if key_path.exists() and cert_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > _now() + dt.timedelta(days=30):
            return _load_key(key_path), cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devcloud (not Microsoft)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "devcloud local CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates the old server certificate.
    (state_dir / "server.pem").unlink(missing_ok=True)
    return key, cert


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


def _server_cert(state_dir: Path, ca_key, ca_cert: x509.Certificate, hosts: list[str]) -> None:
    key_path, cert_path = state_dir / "server-key.pem", state_dir / "server.pem"
    wanted = _san_entries(hosts)
    if key_path.exists() and cert_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = []
        fresh = cert.not_valid_after_utc > _now() + dt.timedelta(days=7)
        if fresh and cert.issuer == ca_cert.subject and all(e in san for e in wanted):
            return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _signing_key(state_dir: Path) -> SigningKey:
    key_path, cert_path = state_dir / "signing-key.pem", state_dir / "signing-cert.pem"
    if key_path.exists() and cert_path.exists():
        return SigningKey(
            _load_key(key_path), x509.load_pem_x509_certificate(cert_path.read_bytes())
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devcloud token signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SigningKey(key, cert)


def ensure_pki(state_dir: Path, host: str) -> Pki:
    """Load or create the CA, the server certificate (SANs 127.0.0.1, localhost, host)
    and the signing key."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(state_dir)
    hosts = ["127.0.0.1", "localhost"]
    if host and host not in hosts and host not in ("0.0.0.0", "::"):  # noqa: S104
        hosts.append(host)
    _server_cert(state_dir, ca_key, ca_cert, hosts)
    return Pki(
        ca_file=(state_dir / "ca.pem").resolve(),
        cert_file=(state_dir / "server.pem").resolve(),
        key_file=(state_dir / "server-key.pem").resolve(),
        signing=_signing_key(state_dir),
    )


def cert_thumbprints(pem: bytes) -> tuple[str, str]:
    """(x5t, x5t#S256) of a PEM certificate: unpadded base64url of SHA-1 / SHA-256 of the DER."""
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return (
        b64url(hashlib.sha1(der).digest()),  # noqa: S324 - a thumbprint, not security
        b64url(hashlib.sha256(der).digest()),
    )
