"""How the broker classifies what the token endpoint answers (tiny `responses` tests).

The behaviour against a real Entra-shaped server is in test_tokens_devcloud.py.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from partner_portal.microsoft import errors, tokens
from tests.microsoft.fake_entra import BASE, TENANT, TOKEN_URL


def token_error(code: int, error: str) -> dict:
    return {"error": error, "error_description": f"AADSTS{code}: no.", "error_codes": [code]}


def test_a_429_becomes_throttled_with_microsofts_retry_after(fake_login):
    fake_login.post(
        TOKEN_URL,
        status=429,
        json={"error": "temporarily_unavailable"},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(errors.Throttled) as info:
        tokens.get_access_token(tenant_id=TENANT)
    assert info.value.retry_after == 7


def test_a_5xx_is_transient(fake_login):
    fake_login.post(TOKEN_URL, status=503, body="Service Unavailable")
    with pytest.raises(errors.Transient) as info:
        tokens.get_access_token(tenant_id=TENANT)
    assert not isinstance(info.value, errors.Throttled)


def test_a_timeout_is_transient(fake_login):
    fake_login.post(TOKEN_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(errors.Transient, match="in time"):
        tokens.get_access_token(tenant_id=TENANT)


def test_a_refused_connection_is_transient(fake_login):
    fake_login.post(TOKEN_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(errors.Transient, match="connect"):
        tokens.get_access_token(tenant_id=TENANT)


@pytest.mark.parametrize(
    "garbled", ["<html>proxy login</html>", '{"access_token": "eyJ', "", '{"token_type": "Bearer"}']
)
def test_a_garbled_token_answer_is_transient_not_a_consent_failure(fake_login, garbled):
    # Truncated, malformed or not JSON at all: a passing fault, retried.
    fake_login.post(TOKEN_URL, status=200, body=garbled)
    with pytest.raises(errors.Transient):
        tokens.get_access_token(tenant_id=TENANT)


@pytest.mark.parametrize(
    ("status", "body"),
    [(429, '{"error": "temporarily_unavailable"}'), (503, "busy"), (200, '{"authoriz')],
)
def test_a_throttled_failing_or_garbled_discovery_is_transient(fake_login, status, body):
    other = str(uuid.uuid4())
    fake_login.get(
        f"{BASE}/{other}/v2.0/.well-known/openid-configuration", status=status, body=body
    )
    with pytest.raises(errors.Transient):
        tokens.get_access_token(tenant_id=other)


def test_redis_unavailable_while_getting_a_token_is_transient(fake_login, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    with pytest.raises(errors.Transient, match="token cache"):
        tokens.get_access_token(tenant_id=TENANT)


def test_renewing_everywhere_gives_every_process_a_fresh_app(fake_login):
    cfg = tokens.config()
    first = tokens._get_entry(cfg, "commercial", TENANT)
    assert tokens._get_entry(cfg, "commercial", TENANT) is first
    tokens.renew_everywhere(tenant_id=TENANT)  # e.g. an access check in another worker
    fresh = tokens._get_entry(cfg, "commercial", TENANT)
    assert fresh is not first
    assert tokens._get_entry(cfg, "commercial", TENANT) is fresh


def test_an_invalid_secret_is_a_credential_error(fake_login):
    fake_login.post(TOKEN_URL, status=401, json=token_error(7000215, "invalid_client"))
    with pytest.raises(errors.CredentialInvalid):
        tokens.get_access_token(tenant_id=TENANT)


def test_an_unknown_tenant_at_discovery_is_tenant_not_found(fake_login):
    other = str(uuid.uuid4())
    fake_login.get(
        f"{BASE}/{other}/v2.0/.well-known/openid-configuration",
        status=400,
        json=token_error(90002, "invalid_tenant"),
    )
    with pytest.raises(errors.TenantNotFound):
        tokens.get_access_token(tenant_id=other)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 429, "json": {"error": "throttled"}, "headers": {"Retry-After": "9"}}, "429"),
        ({"status": 503, "body": "Service Unavailable"}, "503"),
        ({"status": 502, "body": "<html>Bad gateway</html>"}, "502"),
        ({"status": 200, "body": "<html>a captive portal</html>"}, "200"),
        ({"status": 408, "body": "timeout"}, "408"),
    ],
)
def test_a_discovery_answer_that_is_not_an_unknown_tenant_is_transient(fake_login, answer, error):
    other = str(uuid.uuid4())
    fake_login.get(f"{BASE}/{other}/v2.0/.well-known/openid-configuration", **answer)
    with pytest.raises(errors.Transient) as info:
        tokens.get_access_token(tenant_id=other)
    assert not isinstance(info.value, errors.TenantNotFound)
    assert info.value.status == int(error)
    if error == "429":
        assert isinstance(info.value, errors.Throttled) and info.value.retry_after == 9


def test_no_credential_configured_is_a_credential_error(fake_login, settings):
    settings.MICROSOFT_CLIENT_SECRET = ""
    with pytest.raises(errors.CredentialInvalid, match="No credential"):
        tokens.get_access_token(tenant_id=TENANT)


def test_the_secret_goes_in_the_body_and_never_in_the_error(fake_login):
    fake_login.post(TOKEN_URL, status=401, json=token_error(7000215, "invalid_client"))
    with pytest.raises(errors.CredentialInvalid) as info:
        tokens.get_access_token(tenant_id=TENANT)
    sent = fake_login.calls[-1].request.body
    assert "client_secret=s3cret-value" in sent
    assert "s3cret-value" not in str(info.value)


def test_a_login_url_that_is_not_https_is_a_configuration_error(fake_login, settings):
    settings.MICROSOFT_LOGIN_BASE_URL = "http://login.example.test"
    with pytest.raises(errors.MicrosoftError, match="https") as info:
        tokens.get_access_token(tenant_id=TENANT)
    assert type(info.value) is errors.MicrosoftError
