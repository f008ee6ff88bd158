"""The token broker and claim checks against devcloud: real MSAL, real TLS, real Redis."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jwt
import pytest

from partner_portal.microsoft import errors, tokens
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
JWT_SHAPED = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@pytest.fixture
def tid(devcloud, portal) -> str:
    tenant = devcloud.create_tenant(display_name="Northwind")
    devcloud.set_consent(tenant["tenant_id"], portal["client_id"], state="consented")
    return tenant["tenant_id"]


def token_requests(devcloud, tid: str) -> int:
    return devcloud.requests_log(tenant=tid)["by_endpoint"].get("token", 0)


def test_a_token_is_fetched_once_then_served_from_the_shared_cache(devcloud, tid):
    first = tokens.get_access_token(tenant_id=tid)
    tokens.forget_all()  # as if another process asked
    assert tokens.get_access_token(tenant_id=tid) == first
    assert token_requests(devcloud, tid) == 1


def test_devcloud_tokens_pass_the_checks_with_their_signature_verified(tid):
    token = tokens.get_access_token(tenant_id=tid)
    claims = tokens.check_token(
        token, tenant_id=tid, cloud="commercial", required_roles=["Incident.Read.All"]
    )
    assert claims["tid"] == tid and claims["roles"] == ["Incident.Read.All"]
    assert claims["aud"].rstrip("/") == "https://api.security.microsoft.com"


def test_a_tampered_token_fails_the_signature_check(tid):
    token = tokens.get_access_token(tenant_id=tid)
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = ["Incident.ReadWrite.All"]
    forged_payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    with pytest.raises(errors.TokenMismatch, match="signature"):
        tokens.check_token(
            f"{header}.{forged_payload}.{signature}",
            tenant_id=tid,
            cloud="commercial",
            required_roles=["Incident.Read.All"],
        )


def test_a_token_for_another_tenant_is_refused(devcloud, portal, tid):
    other = devcloud.create_tenant()["tenant_id"]
    devcloud.set_consent(other, portal["client_id"], state="consented")
    token = tokens.get_access_token(tenant_id=other)
    with pytest.raises(errors.TokenMismatch, match="issued for tenant"):
        tokens.check_token(token, tenant_id=tid, cloud="commercial", required_roles=[])


def test_the_ca_bundle_is_used_even_with_requests_ca_bundle_in_the_environment(tid, monkeypatch):
    # This machine sets REQUESTS_CA_BUNDLE to the system bundle, which lacks devcloud's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert tokens.get_access_token(tenant_id=tid)


def test_without_devclouds_ca_tls_verification_fails_and_is_not_retried(tid, settings):
    settings.MICROSOFT_CA_BUNDLE = ""
    with pytest.raises(errors.BadResponse, match="TLS"):
        tokens.get_access_token(tenant_id=tid)


def test_a_5xx_from_the_token_endpoint_is_transient(devcloud, tid):
    devcloud.add_fault(endpoint="token", kind="status", status=503)
    with pytest.raises(errors.Transient):
        tokens.get_access_token(tenant_id=tid)


SCRIPT = textwrap.dedent(
    """
    import hashlib, pathlib, sys, time
    import django
    django.setup()
    from partner_portal.microsoft import tokens
    go = pathlib.Path(sys.argv[1])
    # Build the MSAL app now (its discovery), so that both processes race for the token.
    tokens._get_entry(tokens.config(), "commercial", sys.argv[2])
    pathlib.Path(sys.argv[3]).touch()
    while not go.exists():
        time.sleep(0.005)
    token = tokens.get_access_token(tenant_id=sys.argv[2])
    print(hashlib.sha256(token.encode()).hexdigest(), flush=True)
    """
)


def test_two_processes_sharing_the_cache_make_one_discovery_and_one_token_request(
    devcloud, tid, settings, redis_url, tmp_path
):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "partner_portal.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        "REDIS_URL": redis_url,
        "MICROSOFT_CLIENT_ID": settings.MICROSOFT_CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": settings.MICROSOFT_CLIENT_SECRET,
        "MICROSOFT_LOGIN_BASE_URL": settings.MICROSOFT_LOGIN_BASE_URL,
        "MICROSOFT_CA_BUNDLE": settings.MICROSOFT_CA_BUNDLE,
        "VAR_DIR": str(tmp_path / "var"),
    }
    go = tmp_path / "go"
    procs = []
    try:
        for n in range(2):
            # One after the other: the second builds its app from the discovery document the
            # first one shared (a worker process that starts while others run).
            ready = tmp_path / f"ready-{n}"
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SCRIPT, str(go), tid, str(ready)],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            wait_until(
                lambda ready=ready: ready.exists() or any(p.poll() is not None for p in procs),
                timeout=60,
                what=f"process {n} to build its MSAL app",
            )
        assert devcloud.requests_log(tenant=tid)["by_endpoint"].get("discovery", 0) == 1
        # A slow token endpoint: without the lock both processes would miss and both ask.
        devcloud.add_fault(endpoint="token", kind="latency", latency_ms=700)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:  # a process left waiting for "go" must not outlive the test
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(p.returncode == 0 for p in procs), outputs
    digests = {out.strip() for out, _ in outputs}
    assert len(digests) == 1  # the same token
    assert token_requests(devcloud, tid) == 1
    # And the cache holds nothing readable: no Redis value is or contains a JWT, and the
    # stored entry opens only with the portal's key.
    import redis
    from cryptography.fernet import Fernet, InvalidToken
    from django.core.cache import cache

    client = redis.Redis.from_url(redis_url)
    token_hash = digests.pop()
    for key in client.keys("*"):
        value = (client.get(key) if client.type(key) == b"string" else b"") or b""
        assert hashlib.sha256(value).hexdigest() != token_hash
        for candidate in JWT_SHAPED.findall(value):  # base64 ciphertext has no dots
            with pytest.raises(jwt.DecodeError):
                jwt.decode(candidate, options={"verify_signature": False})
    cfg = tokens.config()
    blob = cache.get(tokens._cache_name(cfg, "commercial", tid))
    with pytest.raises(jwt.DecodeError):
        jwt.decode(blob, options={"verify_signature": False})
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(blob)
    secrets = [
        e["secret"] for e in json.loads(tokens._fernet(cfg).decrypt(blob))["AccessToken"].values()
    ]
    assert token_hash in {hashlib.sha256(s.encode()).hexdigest() for s in secrets}


def test_a_renewal_elsewhere_makes_this_process_build_a_fresh_msal_app(devcloud, portal, tid):
    devcloud.set_consent(tid, portal["client_id"], state="none")
    with pytest.raises(errors.ConsentRequired):
        tokens.get_access_token(tenant_id=tid)  # this process's app saw the 400
    devcloud.set_consent(tid, portal["client_id"], state="consented")
    devcloud.clear_requests()
    # An access check succeeds in another worker process: it renews every process's app,
    # so that none replays a "no consent" answer its MSAL cached (§5.5).
    tokens.renew_everywhere(tenant_id=tid)
    assert JWT_SHAPED.fullmatch(tokens.get_access_token(tenant_id=tid).encode())
    # A brand-new app asked Entra (no replayed 400), from the shared discovery document.
    assert devcloud.requests_log(tenant=tid)["by_endpoint"] == {"token": 1}
    devcloud.clear_requests()
    tokens.get_access_token(tenant_id=tid)  # then the token is served from the cache
    assert devcloud.requests_log(tenant=tid)["by_endpoint"] == {}
