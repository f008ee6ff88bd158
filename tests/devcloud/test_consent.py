"""devcloud's admin-consent pages, driven with plain HTTP form posts; redirects are exact."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.devcloud.registration import DEFENDER_SCOPE, REDIRECT_URI

pytestmark = pytest.mark.integration


def consent_url(setup, path: str, **params) -> str:
    query = {"client_id": setup.client_id, "redirect_uri": REDIRECT_URI, "state": "s-123"}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return f"{setup.base_url}/{path}?{urlencode(query)}"


def submit(http, url: str, *, account: str, action: str):
    page = http.get(url)
    assert page.status_code == 200, page.text
    assert "devcloud — not Microsoft" in page.text
    return http.post(url, data={"account": account, "action": action}, allow_redirects=False)


def location_query(resp) -> tuple[str, list[tuple[str, str]]]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qsl(parts.query)


def test_the_page_shows_the_app_and_the_permissions(http, setup):
    url = consent_url(setup, "organizations/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    page = http.get(url).text
    assert "Partner Portal" in page
    assert "Read all incidents" in page and "Incident.Read.All" in page
    assert f"{setup.tenant_id}|admin" in page and f"{setup.tenant_id}|user" in page
    assert "<script" not in page


def test_v2_accept_redirects_with_admin_consent_tenant_state_scope(devcloud, http, setup):
    url = consent_url(setup, "organizations/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    resp = submit(http, url, account=f"{setup.tenant_id}|admin", action="accept")
    target, query = location_query(resp)
    assert target == REDIRECT_URI
    assert query == [
        ("admin_consent", "True"),
        ("tenant", setup.tenant_id),
        ("state", "s-123"),
        ("scope", DEFENDER_SCOPE),
    ]
    # Encoded the way Entra does it: lowercase escapes.
    assert "scope=https%3a%2f%2fapi.security.microsoft.com%2f.default" in resp.headers["Location"]
    consent = devcloud.consent(setup.tenant_id, setup.client_id)
    assert consent["state"] == "consented"
    assert consent["roles"] == ["Incident.Read.All"]
    assert setup.token_response(http).status_code == 200


def test_v2_cancel_redirects_access_denied_without_tenant(devcloud, http, setup):
    url = consent_url(setup, f"{setup.tenant_id}/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    resp = submit(http, url, account=f"{setup.tenant_id}|admin", action="cancel")
    target, query = location_query(resp)
    assert target == REDIRECT_URI
    assert [k for k, _ in query] == [
        "error",
        "error_description",
        "error_uri",
        "admin_consent",
        "state",
    ]
    values = dict(query)
    assert values["error"] == "access_denied"
    assert values["error_description"].startswith("AADSTS65004: User declined to consent")
    assert values["error_uri"] == "https://login.microsoftonline.com/error?code=65004"
    assert values["admin_consent"] == "True" and values["state"] == "s-123"
    assert devcloud.consent(setup.tenant_id, setup.client_id)["state"] == "none"


def test_old_endpoint_accept_and_cancel(http, setup):
    url = consent_url(setup, f"{setup.domain}/adminconsent")
    accepted = submit(http, url, account=f"{setup.tenant_id}|admin", action="accept")
    assert location_query(accepted)[1] == [
        ("tenant", setup.tenant_id),
        ("state", "s-123"),
        ("admin_consent", "True"),
    ]
    cancelled = submit(http, url, account=f"{setup.tenant_id}|admin", action="cancel")
    assert cancelled.headers["Location"] == (
        f"{REDIRECT_URI}?error=access_denied&error_subcode=cancel&state=s-123"
    )


def test_authorize_with_prompt_admin_consent_grants_and_returns_a_code(devcloud, http, setup):
    url = consent_url(
        setup, "common/oauth2/authorize", response_type="code", prompt="admin_consent"
    )
    resp = submit(http, url, account=f"{setup.tenant_id}|admin", action="accept")
    values = dict(location_query(resp)[1])
    assert values["admin_consent"] == "True" and values["state"] == "s-123" and values["code"]
    assert devcloud.consent(setup.tenant_id, setup.client_id)["state"] == "consented"


def test_a_normal_user_sees_need_admin_approval_and_nothing_is_granted(devcloud, http, setup):
    url = consent_url(setup, "organizations/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    resp = submit(http, url, account=f"{setup.tenant_id}|user", action="accept")
    assert resp.status_code == 200
    assert "Need admin approval" in resp.text
    assert "Location" not in resp.headers
    assert devcloud.consent(setup.tenant_id, setup.client_id)["state"] == "none"


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/consent/callback/", "https://portal.example/consent/callback"],
)
def test_an_unregistered_redirect_uri_is_an_error_page_not_a_redirect(http, setup, redirect_uri):
    url = consent_url(
        setup, "organizations/v2.0/adminconsent", scope=DEFENDER_SCOPE, redirect_uri=redirect_uri
    )
    for resp in (
        http.get(url, allow_redirects=False),
        http.post(
            url,
            data={"account": f"{setup.tenant_id}|admin", "action": "accept"},
            allow_redirects=False,
        ),
    ):
        assert resp.status_code == 400
        assert "AADSTS50011" in resp.text
        assert "Location" not in resp.headers


def test_an_unknown_client_id_is_an_error_page(http, setup):
    url = consent_url(
        setup,
        "organizations/v2.0/adminconsent",
        scope=DEFENDER_SCOPE,
        client_id="00000000-0000-0000-0000-000000000001",
    )
    resp = http.get(url, allow_redirects=False)
    assert resp.status_code == 400 and "AADSTS700016" in resp.text


def test_loopback_http_redirect_uris_match_on_any_port(devcloud, http, setup):
    devcloud.create_app(
        client_id=setup.client_id,
        display_name="Partner Portal",
        secrets=[{"value": setup.secret}],
        redirect_uris=["http://127.0.0.1/consent/callback/"],
    )
    url = consent_url(
        setup,
        "organizations/v2.0/adminconsent",
        scope=DEFENDER_SCOPE,
        redirect_uri="http://127.0.0.1:8000/consent/callback/",
    )
    resp = submit(http, url, account=f"{setup.tenant_id}|admin", action="accept")
    assert resp.headers["Location"].startswith("http://127.0.0.1:8000/consent/callback/?")


def test_a_tenant_specific_page_offers_only_that_tenant(devcloud, http, setup):
    other = devcloud.create_tenant(display_name="Fabrikam")
    url = consent_url(setup, f"{setup.tenant_id}/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    page = http.get(url).text
    assert setup.tenant_id in page and other["tenant_id"] not in page
    resp = http.post(url, data={"account": f"{other['tenant_id']}|admin", "action": "accept"})
    assert resp.status_code == 400 and "AADSTS50020" in resp.text


def test_the_session_server_also_serves_the_consent_page_over_http(devcloud, setup):
    import requests

    assert devcloud.http_base_url.startswith("http://127.0.0.1:")
    plain = requests.Session()
    plain.trust_env = False
    url = consent_url(setup, "organizations/v2.0/adminconsent", scope=DEFENDER_SCOPE)
    url = url.replace(setup.base_url, devcloud.http_base_url)
    resp = plain.post(
        url, data={"account": f"{setup.tenant_id}|admin", "action": "accept"}, allow_redirects=False
    )
    assert dict(location_query(resp)[1])["tenant"] == setup.tenant_id
