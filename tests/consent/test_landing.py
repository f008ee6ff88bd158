"""The public landing page and the redirect to Microsoft."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent import flow
from partner_portal.consent.models import ConsentLink


def test_the_landing_page_needs_no_sign_in_and_says_who_asks_for_what(
    client, link, consent_settings
):
    response = client.get(f"/consent/{link.token}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Contoso Managed Security" in page
    assert "Northwind" in page
    assert "Incident.Read.All" in page and "Incident.ReadWrite.All" not in page
    assert "What Contoso Managed Security does with it" in page
    assert "Global Administrator" in page
    # Works without JavaScript: a plain form POST to the start URL.
    assert f'action="/consent/{link.token}/start/"' in page
    assert "<script" not in page.split("</head>")[1]


def test_with_incident_updates_the_page_asks_for_readwrite(client, link, consent_settings):
    consent_settings.MICROSOFT_INCIDENT_UPDATES = True
    page = client.get(f"/consent/{link.token}/").content.decode()
    assert "Incident.ReadWrite.All" in page
    assert "Incident.Read.All<" not in page


@pytest.mark.parametrize(
    ("source", "updates", "permission", "allows"),
    [
        ("defender", False, "Incident.Read.All", "Read all Microsoft 365 Defender incidents"),
        ("defender", True, "Incident.ReadWrite.All", "Read and update all Microsoft 365 Defender"),
        (
            "graph",
            False,
            "SecurityIncident.Read.All",
            "Read all security incidents (Microsoft Graph)",
        ),
        ("graph", True, "SecurityIncident.ReadWrite.All", "Read and update all security incidents"),
    ],
)
def test_the_page_and_the_message_say_what_each_permission_allows(
    client, alice, link, consent_settings, source, updates, permission, allows
):
    """The words are the templates'; every permission the portal can ask for has them."""
    consent_settings.MICROSOFT_INCIDENT_UPDATES = updates
    link.tenant.source = source
    link.tenant.save()
    page = client.get(f"/consent/{link.token}/").content.decode()
    assert f'<span class="mono">{permission}</span>' in page
    assert allows in page
    use = "updates the incidents they work on" if updates else "We cannot change anything"
    assert use in page
    client.force_login(alice)
    created = client.post(f"/consent/links/new/{link.tenant.pk}/", {"expected_tenant": ""})
    message = client.get(created.url).content.decode()
    wording = "read and update your organisation" if updates else "read your organisation"
    assert f"{permission} ({wording}" in message


def test_opening_the_page_is_counted(client, link, consent_settings):
    client.get(f"/consent/{link.token}/")
    client.get(f"/consent/{link.token}/")
    link.refresh_from_db()
    assert link.opened_count == 2
    assert link.first_opened_at <= link.last_opened_at
    assert AuditEvent.objects.filter(action="consent.link_opened").count() == 2


def test_an_unknown_token_is_a_404(client, db, consent_settings):
    assert client.get("/consent/not-a-real-token-at-all/").status_code == 404


@pytest.mark.parametrize("how", ["expired", "revoked", "used"])
def test_unusable_links_get_a_410_page_that_says_what_to_do(client, link, consent_settings, how):
    now = timezone.now()
    changes = {
        "expired": {"expires_at": now - timedelta(minutes=1)},
        "revoked": {"revoked_at": now},
        "used": {"completed_at": now, "outcome": ConsentLink.Outcome.GRANTED},
    }[how]
    ConsentLink.objects.filter(pk=link.pk).update(**changes)
    for response in (
        client.get(f"/consent/{link.token}/"),
        client.post(f"/consent/{link.token}/start/"),
    ):
        assert response.status_code == 410
        text = response.content.decode()
        assert "Continue to Microsoft" not in text
        assert "Ask Contoso Managed Security for a new" in text or "nothing more to do" in text
    link.refresh_from_db()
    assert link.opened_count == 0


def test_start_redirects_to_the_v2_admin_consent_endpoint(client, link, consent_settings):
    response = client.post(f"/consent/{link.token}/start/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == (
        "https://login.microsoftonline.com/organizations/v2.0/adminconsent"
    )
    query = parse_qs(url.query)
    assert query["client_id"] == ["11111111-2222-3333-4444-555555555555"]
    assert query["redirect_uri"] == ["https://portal.example/consent/callback/"]
    assert query["scope"] == ["https://api.security.microsoft.com/.default"]
    assert flow.verify_state(query["state"][0]) == link


def test_start_uses_the_expected_tenant_in_the_path(client, customer, alice, consent_settings):
    expected = "AAAABBBB-0000-CCCC-1111-DDDD2222EEEE"
    link = flow.create_link(tenant=customer, created_by=alice, expected_tenant=expected)
    location = client.post(f"/consent/{link.token}/start/")["Location"]
    assert urlsplit(location).path == f"/{expected.lower()}/v2.0/adminconsent"


def test_start_uses_the_known_tenant_id_when_the_link_expects_none(
    client, tenant_a, alice, consent_settings
):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    location = client.post(f"/consent/{link.token}/start/")["Location"]
    assert urlsplit(location).path == f"/{tenant_a.entra_tenant_id}/v2.0/adminconsent"


def test_government_clouds_consent_at_their_own_login_host(
    client, customer, alice, consent_settings
):
    customer.cloud = "gcc_high"
    customer.save()
    link = flow.create_link(tenant=customer, created_by=alice)
    location = client.post(f"/consent/{link.token}/start/")["Location"]
    assert location.startswith("https://login.microsoftonline.us/organizations/")


def test_the_consent_base_url_setting_only_changes_the_browser_url(client, link, consent_settings):
    consent_settings.MICROSOFT_LOGIN_BASE_URL = "https://127.0.0.1:8443"
    assert client.post(f"/consent/{link.token}/start/")["Location"].startswith(
        "https://127.0.0.1:8443/organizations/"
    )
    consent_settings.MICROSOFT_CONSENT_BASE_URL = "http://127.0.0.1:8080"
    assert client.post(f"/consent/{link.token}/start/")["Location"].startswith(
        "http://127.0.0.1:8080/organizations/"
    )


def test_start_only_accepts_post(client, link, consent_settings):
    assert client.get(f"/consent/{link.token}/start/").status_code == 405
