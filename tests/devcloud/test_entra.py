"""devcloud's Entra ID: discovery, JWKS, the token endpoint, MSAL against it for real."""

from __future__ import annotations

import base64
import hashlib
import ssl
import time
import uuid

import jwt
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.devcloud.registration import DEFENDER_SCOPE, make_certificate

pytestmark = pytest.mark.integration


def msal_app(devcloud, setup, credential):
    return msal.ConfidentialClientApplication(
        setup.client_id,
        client_credential=credential,
        authority=f"{devcloud.base_url}/{setup.tenant_id}",
        http_client=devcloud.session(),
        instance_discovery=False,
    )


def jwks_client(devcloud, tenant_id: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(
        f"{devcloud.base_url}/{tenant_id}/discovery/v2.0/keys",
        ssl_context=ssl.create_default_context(cafile=devcloud.ca_file),
    )


def verify(devcloud, tenant_id: str, token: str) -> dict:
    key = jwks_client(devcloud, tenant_id).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience="https://api.security.microsoft.com",
        issuer=f"https://sts.windows.net/{tenant_id}/",
    )


def assert_entra_error(resp, status: int, error: str, code: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in body["error_description"]
    assert len(body["timestamp"]) == 20 and body["timestamp"][10] == " "
    assert body["error_uri"].endswith(f"/error?code={code}")
    assert "no-store" in resp.headers["Cache-Control"]
    return body


# --- discovery and keys ----------------------------------------------------------------------


def test_v2_discovery_carries_the_tenant_guid_when_asked_by_domain(devcloud, setup, http):
    resp = http.get(f"{devcloud.base_url}/{setup.domain}/v2.0/.well-known/openid-configuration")
    assert resp.status_code == 200
    doc = resp.json()
    base, tid = devcloud.base_url, setup.tenant_id
    assert doc["token_endpoint"] == f"{base}/{tid}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/{tid}/oauth2/v2.0/authorize"
    assert doc["issuer"] == f"{base}/{tid}/v2.0"
    assert doc["jwks_uri"] == f"{base}/{tid}/discovery/v2.0/keys"
    assert "client_secret_basic" in doc["token_endpoint_auth_methods_supported"]
    assert resp.headers["Cache-Control"] == "max-age=86400, private"


def test_v1_discovery_has_the_sts_issuer(devcloud, setup, http):
    doc = http.get(f"{devcloud.base_url}/{setup.tenant_id}/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"https://sts.windows.net/{setup.tenant_id}/"
    assert doc["token_endpoint"] == f"{devcloud.base_url}/{setup.tenant_id}/oauth2/token"
    assert doc["jwks_uri"] == f"{devcloud.base_url}/{setup.tenant_id}/discovery/keys"


def test_organizations_discovery_uses_the_tenantid_template(devcloud, http):
    doc = http.get(f"{devcloud.base_url}/organizations/v2.0/.well-known/openid-configuration")
    assert doc.json()["issuer"] == f"{devcloud.base_url}/{{tenantid}}/v2.0"


def test_unknown_tenant_discovery_is_400_aadsts90002(devcloud, http):
    resp = http.get(
        f"{devcloud.base_url}/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    )
    body = assert_entra_error(resp, 400, "invalid_tenant", 90002)
    assert "Tenant 'nosuch.onmicrosoft.com' not found" in body["error_description"]


def test_msal_refuses_an_unknown_tenant_in_its_constructor(devcloud, setup):
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            setup.client_id,
            client_credential=setup.secret,
            authority=f"{devcloud.base_url}/{uuid.uuid4()}",
            http_client=devcloud.session(),
            instance_discovery=False,
        )


def test_jwks_keys_have_kid_equal_to_x5t_and_a_certificate(devcloud, setup, http):
    for path in ("discovery/v2.0/keys", "discovery/keys"):
        keys = http.get(f"{devcloud.base_url}/{setup.tenant_id}/{path}").json()["keys"]
        assert len(keys) == 1
        key = keys[0]
        assert key["kid"] == key["x5t"]
        assert {"kty", "use", "n", "e", "x5c", "issuer"} <= set(key)
        der = base64.b64decode(key["x5c"][0])
        thumb = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324
        assert key["x5t"] == thumb
        x509.load_der_x509_certificate(der)


# --- MSAL, secrets and certificates -----------------------------------------------------------


def test_msal_gets_a_token_by_secret_and_then_serves_it_from_its_cache(devcloud, consented):
    app = msal_app(devcloud, consented, consented.secret)
    first = app.acquire_token_for_client([DEFENDER_SCOPE])
    assert first["token_source"] == "identity_provider", first
    assert first["expires_in"] == 3599
    second = app.acquire_token_for_client([DEFENDER_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    log = devcloud.requests_log(tenant=consented.tenant_id)
    assert log["by_endpoint"]["token"] == 1
    assert log["by_endpoint"]["discovery"] == 1

    claims = verify(devcloud, consented.tenant_id, first["access_token"])
    assert claims["tid"] == consented.tenant_id
    assert claims["appid"] == consented.client_id
    assert claims["appidacr"] == "1"
    assert claims["roles"] == ["Incident.Read.All"]
    assert (
        claims["oid"]
        == claims["sub"]
        == devcloud.consent(consented.tenant_id, consented.client_id)["service_principal_id"]
    )
    assert claims["idtyp"] == "app" and claims["ver"] == "1.0"
    assert claims["exp"] - claims["iat"] == 3599 and claims["nbf"] == claims["iat"]
    header = jwt.get_unverified_header(first["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == header["x5t"]


@pytest.mark.parametrize("form", ["pem_with_public_certificate", "pem_with_sha1_thumbprint"])
def test_msal_gets_a_token_with_a_certificate(devcloud, consented, form):
    key_pem, cert_pem = make_certificate()
    devcloud.create_app(
        client_id=consented.client_id,
        display_name="Partner Portal",
        certificates=[{"pem": cert_pem}],
        required_permissions=["Incident.Read.All"],
    )
    if form == "pem_with_public_certificate":
        credential = {"private_key": key_pem, "public_certificate": cert_pem}
        expected_alg = "PS256"
    else:
        der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
            serialization.Encoding.DER
        )
        credential = {"private_key": key_pem, "thumbprint": hashlib.sha1(der).hexdigest()}  # noqa: S324
        expected_alg = "RS256"
    app = msal_app(devcloud, consented, credential)
    result = app.acquire_token_for_client([DEFENDER_SCOPE])
    assert "access_token" in result, result
    claims = verify(devcloud, consented.tenant_id, result["access_token"])
    assert claims["appidacr"] == "2"
    assert app.acquire_token_for_client([DEFENDER_SCOPE])["token_source"] == "cache"
    # What MSAL sent is what we meant to test.
    notes = [e.get("note") for e in devcloud.requests_log()["entries"] if e["endpoint"] == "token"]
    thumb = "x5t#S256" if expected_alg == "PS256" else "x5t"
    assert notes == [f"client_assertion {expected_alg} {thumb}"]


def _assertion(setup, key_pem, cert_pem, **overrides) -> str:
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode()
    now = time.time()
    claims = {
        "aud": f"{setup.base_url}/{setup.tenant_id}/oauth2/v2.0/token",
        "iss": setup.client_id,
        "sub": setup.client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return jwt.encode(claims, key_pem, algorithm="PS256", headers={"x5t#S256": x5t})


@pytest.fixture
def cert_setup(devcloud, consented):
    key_pem, cert_pem = make_certificate()
    devcloud.create_app(
        client_id=consented.client_id,
        certificates=[{"pem": cert_pem}],
        required_permissions=["Incident.Read.All"],
    )
    return consented, key_pem, cert_pem


def _assertion_form(assertion: str) -> dict:
    return {
        "client_secret": None,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def test_a_float_exp_assertion_is_accepted(cert_setup, http):
    setup, key_pem, cert_pem = cert_setup
    resp = setup.token_response(http, **_assertion_form(_assertion(setup, key_pem, cert_pem)))
    assert resp.status_code == 200, resp.text


def test_an_expired_assertion_is_rejected(cert_setup, http):
    setup, key_pem, cert_pem = cert_setup
    old = time.time() - 3600
    assertion = _assertion(setup, key_pem, cert_pem, iat=old - 600, exp=old)
    resp = setup.token_response(http, **_assertion_form(assertion))
    assert_entra_error(resp, 401, "invalid_client", 700024)


def test_an_assertion_signed_by_another_key_is_rejected(cert_setup, http):
    setup, _key_pem, cert_pem = cert_setup
    other_key, _ = make_certificate()
    resp = setup.token_response(http, **_assertion_form(_assertion(setup, other_key, cert_pem)))
    assert_entra_error(resp, 401, "invalid_client", 700027)


def test_an_assertion_for_another_audience_is_rejected(cert_setup, http):
    setup, key_pem, cert_pem = cert_setup
    assertion = _assertion(
        setup, key_pem, cert_pem, aud="https://login.microsoftonline.com/x/oauth2/v2.0/token"
    )
    resp = setup.token_response(http, **_assertion_form(assertion))
    assert_entra_error(resp, 401, "invalid_client", 50027)


def test_an_unknown_certificate_is_rejected(consented, http):
    key_pem, cert_pem = make_certificate()
    resp = consented.token_response(
        http, **_assertion_form(_assertion(consented, key_pem, cert_pem))
    )
    assert_entra_error(resp, 401, "invalid_client", 700027)


def test_http_basic_client_authentication_works(consented, http):
    resp = http.post(
        f"{consented.base_url}/{consented.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": DEFENDER_SCOPE, "client_info": "1"},
        auth=(consented.client_id, consented.secret),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert "no-store" in resp.headers["Cache-Control"]


# --- errors -----------------------------------------------------------------------------------


def test_missing_scope_is_aadsts900144(consented, http):
    resp = consented.token_response(http, scope=None)
    body = assert_entra_error(resp, 400, "invalid_request", 900144)
    assert "'scope'" in body["error_description"]


def test_two_resources_in_scope_are_refused(consented, http):
    scope = f"{DEFENDER_SCOPE} https://graph.microsoft.com/.default"
    assert_entra_error(consented.token_response(http, scope=scope), 400, "invalid_scope", 700022)


def test_a_scope_without_default_is_refused(consented, http):
    scope = "https://api.security.microsoft.com/Incident.Read.All"
    assert_entra_error(consented.token_response(http, scope=scope), 400, "invalid_scope", 1002012)


def test_an_unknown_resource_is_aadsts500011(consented, http):
    scope = "https://unknown.example/.default"
    assert_entra_error(consented.token_response(http, scope=scope), 400, "invalid_resource", 500011)


def test_wrong_secret_is_401_aadsts7000215(consented, http):
    resp = consented.token_response(http, client_secret="wrong")
    assert_entra_error(resp, 401, "invalid_client", 7000215)


def test_expired_secret_is_401_aadsts7000222(devcloud, consented, http):
    devcloud.expire_secrets(consented.client_id)
    resp = consented.token_response(http)
    assert_entra_error(resp, 401, "invalid_client", 7000222)


def test_no_service_principal_is_401_aadsts7000229(setup, http):
    body = assert_entra_error(setup.token_response(http), 401, "invalid_client", 7000229)
    assert "missing service principal" in body["error_description"]


def test_no_service_principal_can_be_the_older_400_aadsts700016(devcloud, setup, http):
    tenant = devcloud.create_tenant(no_sp_error="700016")
    setup.tenant_id = tenant["tenant_id"]
    assert_entra_error(setup.token_response(http), 400, "unauthorized_client", 700016)


def test_an_unknown_app_is_aadsts700016(setup, http):
    resp = setup.token_response(http, client_id=str(uuid.uuid4()))
    assert_entra_error(resp, 400, "unauthorized_client", 700016)


def test_a_disabled_app_is_aadsts7000112(devcloud, setup, http):
    devcloud.set_consent(setup.tenant_id, setup.client_id, state="disabled")
    assert_entra_error(setup.token_response(http), 400, "unauthorized_client", 7000112)


def test_revoked_consent_is_back_to_no_service_principal(devcloud, consented, http):
    assert consented.token_response(http).status_code == 200
    devcloud.revoke_consent(consented.tenant_id, consented.client_id)
    assert devcloud.consent(consented.tenant_id, consented.client_id)["state"] == "none"
    assert_entra_error(consented.token_response(http), 401, "invalid_client", 7000229)


def test_consent_without_roles_gives_a_token_without_roles_and_the_api_says_403(
    devcloud, setup, http
):
    devcloud.set_consent(setup.tenant_id, setup.client_id, state="no_roles")
    token = setup.token(http)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert "roles" not in claims
    resp = http.get(f"{setup.base_url}/api/incidents", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "Forbidden"


def test_an_unknown_tenant_at_the_token_endpoint_is_aadsts90002(setup, http):
    setup.tenant_id = "nosuch.onmicrosoft.com"
    assert_entra_error(setup.token_response(http), 400, "invalid_request", 90002)


def test_token_lifetime_is_configurable(devcloud, consented, http):
    devcloud.set_limits(token_lifetime=600)
    resp = consented.token_response(http)
    assert resp.json()["expires_in"] == 600


def test_msal_reports_errors_as_the_server_json(devcloud, setup):
    result = msal_app(devcloud, setup, setup.secret).acquire_token_for_client([DEFENDER_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000229]


def test_msal_with_a_domain_authority_signs_for_the_guid_token_endpoint(devcloud, consented):
    key_pem, cert_pem = make_certificate()
    devcloud.create_app(
        client_id=consented.client_id,
        certificates=[{"pem": cert_pem}],
        required_permissions=["Incident.Read.All"],
    )
    app = msal.ConfidentialClientApplication(
        consented.client_id,
        client_credential={"private_key": key_pem, "public_certificate": cert_pem},
        authority=f"{devcloud.base_url}/{consented.domain}",
        http_client=devcloud.session(),
        instance_discovery=False,
    )
    result = app.acquire_token_for_client([DEFENDER_SCOPE])
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["tid"] == (
        consented.tenant_id
    )


def test_the_v1_token_endpoint_takes_a_resource(consented, http):
    resp = http.post(
        f"{consented.base_url}/{consented.tenant_id}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": consented.client_id,
            "client_secret": consented.secret,
            "resource": "https://api.security.microsoft.com",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["expires_in"] == "3599"
    assert body["resource"] == "https://api.security.microsoft.com"
    assert int(body["expires_on"]) - int(body["not_before"]) == 3599


def test_a_blocked_tenant_is_aadsts5000225(devcloud, consented, http):
    devcloud.update_tenant(consented.tenant_id, blocked=True)
    assert_entra_error(consented.token_response(http), 400, "invalid_request", 5000225)
    devcloud.update_tenant(consented.tenant_id, blocked=False)
    assert consented.token_response(http).status_code == 200
