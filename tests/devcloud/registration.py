"""A tenant and an app registered in devcloud, and credentials for it: for devcloud's own tests
(fixtures `setup` and `consented` in tests/devcloud/conftest.py) and the portal's."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

DEFENDER_SCOPE = "https://api.security.microsoft.com/.default"
REDIRECT_URI = "https://portal.example/consent/callback/"


@dataclass
class Setup:
    tenant_id: str
    domain: str
    client_id: str
    secret: str
    base_url: str

    def token_response(self, http, *, scope: str = DEFENDER_SCOPE, **form):
        data = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
            "scope": scope,
        }
        data.update(form)
        data = {k: v for k, v in data.items() if v is not None}
        return http.post(f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token", data=data)

    def token(self, http, **form) -> str:
        resp = self.token_response(http, **form)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]


def make_certificate() -> tuple[str, str]:
    """(private key PEM, certificate PEM) for a certificate credential."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner-portal-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()
