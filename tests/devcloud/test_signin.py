"""devcloud's user sign-in, spoken by hand (no MSAL): the authorize page, the
authorization_code grant with PKCE, ID tokens, and Microsoft's errors for misuse."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest

from tests.devcloud.registration import REDIRECT_URI

pytestmark = pytest.mark.integration


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(setup, challenge: str, **params) -> str:
    query = {
        "client_id": setup.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | params
    query = {k: v for k, v in query.items() if v is not None}
    return f"{setup.base_url}/{setup.tenant_id}/oauth2/v2.0/authorize?{urlencode(query)}"


def sign_in(http, url: str, user: dict, action: str = "signin") -> dict[str, str]:
    page = http.get(url)
    assert page.status_code == 200, page.text
    assert "devcloud — not Microsoft" in page.text and user["user_principal_name"] in page.text
    resp = http.post(
        url, data={"account": user["object_id"], "action": action}, allow_redirects=False
    )
    assert resp.status_code == 302, resp.text
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def redeem(http, setup, code: str, verifier: str, **form):
    data = {
        "grant_type": "authorization_code",
        "client_id": setup.client_id,
        "client_secret": setup.secret,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "scope": "openid profile",
    } | form
    data = {k: v for k, v in data.items() if v is not None}
    return http.post(f"{setup.base_url}/{setup.tenant_id}/oauth2/v2.0/token", data=data)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def user(devcloud, setup):
    return devcloud.create_user(
        setup.tenant_id,
        "ada@contoso.onmicrosoft.com",
        display_name="Ada Lovelace",
        app_roles={setup.client_id: ["Portal.TeamA"]},
        groups=["0f6f1b9e-0000-4000-8000-000000000001"],
    )


def test_the_round_trip_gives_a_signed_v2_id_token(http, devcloud, setup, user):
    verifier, challenge = pkce()
    answer = sign_in(http, authorize_url(setup, challenge), user)
    assert answer["state"] == "st-1" and answer["session_state"]
    resp = redeem(http, setup, answer["code"], verifier)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    issuer = f"{setup.base_url}/{setup.tenant_id}/v2.0"
    keys = http.get(f"{setup.base_url}/{setup.tenant_id}/discovery/v2.0/keys").json()["keys"]
    key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(
        body["id_token"], key, algorithms=["RS256"], audience=setup.client_id, issuer=issuer
    )
    assert claims["oid"] == user["object_id"] and claims["tid"] == setup.tenant_id
    assert claims["preferred_username"] == "ada@contoso.onmicrosoft.com"
    assert claims["name"] == "Ada Lovelace" and claims["nonce"] == "n-1"
    assert claims["roles"] == ["Portal.TeamA"]
    assert claims["groups"] == ["0f6f1b9e-0000-4000-8000-000000000001"]
    assert claims["amr"] == ["pwd", "mfa"] and claims["ver"] == "2.0"
    assert "idp" not in claims
    discovery = http.get(
        f"{setup.base_url}/{setup.tenant_id}/v2.0/.well-known/openid-configuration"
    )
    assert discovery.json()["issuer"] == issuer


def test_roles_are_per_app_and_mfa_and_overage_show_in_the_token(http, devcloud, setup, user):
    many = [str(uuid.uuid4()) for _ in range(201)]
    devcloud.update_user(
        setup.tenant_id, user["object_id"], groups=many, mfa=False, app_roles={"other-app": ["X"]}
    )
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    claims = claims_of(redeem(http, setup, code, verifier).json()["id_token"])
    assert "roles" not in claims and "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}
    assert claims["_claim_sources"]["src1"]["endpoint"].endswith(
        f"/users/{user['object_id']}/getMemberObjects"
    )
    assert claims["amr"] == ["pwd"]


def test_a_guest_token_names_the_home_tenant_in_idp(http, devcloud, setup):
    home = devcloud.create_tenant(domain="fabrikam.onmicrosoft.com")
    guest = devcloud.create_user(
        setup.tenant_id,
        "eve_fabrikam#EXT#@contoso.onmicrosoft.com",
        home_tenant_id=home["tenant_id"],
    )
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), guest)["code"]
    claims = claims_of(redeem(http, setup, code, verifier).json()["id_token"])
    assert claims["tid"] == setup.tenant_id
    assert claims["idp"] == f"https://sts.windows.net/{home['tenant_id']}/"


def error_of(resp) -> tuple[str, int]:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}: ")
    return body["error"], body["error_codes"][0]


def test_a_code_is_single_use(http, setup, user):
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    assert redeem(http, setup, code, verifier).status_code == 200
    assert error_of(redeem(http, setup, code, verifier)) == ("invalid_grant", 54005)


def test_an_expired_code_is_refused(http, devcloud, setup, user):
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    devcloud.expire_codes()
    assert error_of(redeem(http, setup, code, verifier)) == ("invalid_grant", 70008)


def test_a_wrong_code_verifier_is_refused(http, setup, user):
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    assert error_of(redeem(http, setup, code, "x" * 50)) == ("invalid_grant", 50148)
    assert error_of(redeem(http, setup, code, None)) == ("invalid_grant", 50148)
    assert redeem(http, setup, code, verifier).status_code == 200


def test_another_redirect_uri_at_redemption_is_refused(http, setup, user):
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    resp = redeem(http, setup, code, verifier, redirect_uri="https://evil.example/cb")
    assert error_of(resp) == ("invalid_grant", 500112)


def test_an_unknown_code_is_refused(http, setup, user):
    assert error_of(redeem(http, setup, "made-up", "v" * 43)) == ("invalid_grant", 9002313)


def test_the_code_needs_the_apps_credentials(http, setup, user):
    verifier, challenge = pkce()
    code = sign_in(http, authorize_url(setup, challenge), user)["code"]
    resp = redeem(http, setup, code, verifier, client_secret="wrong")
    assert resp.status_code == 401 and resp.json()["error_codes"] == [7000215]


def test_an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(http, setup):
    _, challenge = pkce()
    resp = http.get(
        authorize_url(setup, challenge, redirect_uri="https://evil.example/cb"),
        allow_redirects=False,
    )
    assert resp.status_code == 400 and "AADSTS50011" in resp.text
    assert "Location" not in resp.headers


def test_an_unknown_app_gets_an_error_page(http, setup):
    _, challenge = pkce()
    resp = http.get(authorize_url(setup, challenge, client_id=str(uuid.uuid4())))
    assert resp.status_code == 400 and "AADSTS700016" in resp.text


def test_other_response_types_are_redirected_with_an_error(http, setup):
    _, challenge = pkce()
    resp = http.get(authorize_url(setup, challenge, response_type="token"), allow_redirects=False)
    query = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
    assert query["error"] == "unsupported_response_type" and query["state"] == "st-1"


def test_cancel_redirects_access_denied(http, setup, user):
    _, challenge = pkce()
    answer = sign_in(http, authorize_url(setup, challenge), user, action="cancel")
    assert answer["error"] == "access_denied" and answer["state"] == "st-1"
    assert answer["error_description"].startswith("AADSTS65004")
    assert "code" not in answer


def test_the_page_lists_only_users_of_that_tenant(http, devcloud, setup, user):
    other = devcloud.create_tenant(domain="fabrikam.onmicrosoft.com")
    devcloud.create_user(other["tenant_id"], "bob@fabrikam.onmicrosoft.com")
    _, challenge = pkce()
    page = http.get(authorize_url(setup, challenge)).text
    assert "ada@contoso.onmicrosoft.com" in page and "bob@fabrikam" not in page


def test_sign_out_page_offers_a_registered_return_address_only(http, setup):
    base = f"{setup.base_url}/{setup.tenant_id}/oauth2/v2.0/logout"
    page = http.get(f"{base}?{urlencode({'post_logout_redirect_uri': REDIRECT_URI})}").text
    assert "You signed out" in page and f'href="{REDIRECT_URI}"' in page
    page = http.get(f"{base}?post_logout_redirect_uri=https://evil.example/").text
    assert "evil.example" not in page


def test_users_are_managed_through_the_control_api(devcloud, setup, user):
    assert [u["object_id"] for u in devcloud.users(setup.tenant_id)] == [user["object_id"]]
    changed = devcloud.update_user(setup.tenant_id, user["object_id"], app_roles={})
    assert changed["app_roles"] == {}
    with pytest.raises(Exception, match="409"):
        devcloud.create_user(setup.tenant_id, "x@y", object_id=user["object_id"])
    with pytest.raises(Exception, match="400"):
        devcloud.create_user(setup.tenant_id, "x@y", groups="not-a-list")
