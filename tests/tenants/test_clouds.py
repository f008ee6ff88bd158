"""National clouds per tenant: each cloud's login host, token resource and API, its own app
registration, and devcloud refusing a token from one cloud at another's API."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from partner_portal.consent import flow
from partner_portal.incidents import sync
from partner_portal.incidents.models import Incident, SyncOutcome
from partner_portal.microsoft import errors, tokens
from partner_portal.microsoft.clouds import CLOUDS, get_cloud
from tests.factories import (
    ConsentedTenantFactory,
    ConsentLinkFactory,
    GroupFactory,
    TenantFactory,
    UserFactory,
)
from tests.incidents.helpers import tid

GOV_DEFENDER = "https://api-gov.security.microsoft.us"


@pytest.fixture(autouse=True)
def _local_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture
def clouds_settings(settings, devcloud, devcloud_settings):
    """devcloud serving each cloud under its own base URL, and a GCC High app registration
    (devcloud's app registry is shared, so the same app; its own settings here)."""
    per_cloud = devcloud.base_url + "/_clouds/{cloud}"
    settings.MICROSOFT_LOGIN_BASE_URL = per_cloud
    settings.MICROSOFT_DEFENDER_BASE_URL = per_cloud
    settings.MICROSOFT_GRAPH_BASE_URL = per_cloud
    settings.MICROSOFT_CLOUD_CREDENTIALS = {
        "gcc_high": {
            "client_id": devcloud_settings["client_id"],
            "client_secret": devcloud_settings["secret"],
            "certificate_path": "",
            "private_key_path": "",
        },
        "dod": {},
    }
    return devcloud_settings


def gov_tenant(devcloud, app, **fields):
    tenant_id = str(uuid.uuid4())
    devcloud.create_tenant(tenant_id=tenant_id, cloud="gcc_high")
    devcloud.set_consent(tenant_id, app["client_id"], roles=["Incident.Read.All"])
    devcloud.generate_incidents(tenant_id, 12, seed=3)
    return ConsentedTenantFactory(entra_tenant_id=uuid.UUID(tenant_id), cloud="gcc_high", **fields)


def test_the_cloud_table_names_each_clouds_hosts():
    assert CLOUDS["gcc_high"].login_base_url == "https://login.microsoftonline.us"
    assert CLOUDS["gcc_high"].defender_resource == GOV_DEFENDER
    assert CLOUDS["gcc_high"].graph_base_url == "https://graph.microsoft.us"
    assert CLOUDS["dod"].graph_base_url == "https://dod-graph.microsoft.us"
    assert CLOUDS["dod"].portal_base_url == "https://security.apps.mil"
    assert CLOUDS["gcc"].defender_base_url == "https://api-gcc.security.microsoft.us"
    assert CLOUDS["commercial"].resource("graph") == "https://graph.microsoft.com"
    # An override naming the cloud (devcloud) takes the place of the host, not the resource.
    dev = get_cloud("gcc_high", defender_base_url="https://dc:1/_clouds/{cloud}/")
    assert dev.defender_base_url == "https://dc:1/_clouds/gcc_high"
    assert dev.defender_resource == GOV_DEFENDER


@pytest.mark.integration
def test_a_gcc_high_tenant_gets_its_token_from_the_us_login_for_the_gov_api(
    db, devcloud, clouds_settings
):
    tenant = gov_tenant(devcloud, clouds_settings)
    devcloud.clear_requests()
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS, run.error_message
    assert Incident.objects.filter(tenant=tenant).count() == 12
    paths = [e["path"] for e in devcloud.requests_log(tid(tenant))["entries"]]
    assert any(p.startswith(f"/_clouds/gcc_high/{tid(tenant)}/oauth2/") for p in paths), paths
    assert "/_clouds/gcc_high/api/incidents" in paths
    assert not [p for p in paths if not p.startswith("/_clouds/gcc_high/")]

    token = tokens.get_access_token(tenant_id=tid(tenant), cloud="gcc_high")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == GOV_DEFENDER
    assert claims["iss"] == f"https://login.microsoftonline.us/{tid(tenant)}/"
    # The access check verifies it against the gov login host's keys.
    assert tenant.incident_client().check_access() == ["Incident.Read.All"]


@pytest.mark.integration
def test_devcloud_refuses_a_token_from_another_cloud(db, devcloud, clouds_settings, http):
    gov = gov_tenant(devcloud, clouds_settings)
    gov_token = tokens.get_access_token(tenant_id=tid(gov), cloud="gcc_high")
    bearer = {"Authorization": f"Bearer {gov_token}"}
    base = devcloud.base_url
    assert http.get(f"{base}/_clouds/gcc_high/api/incidents", headers=bearer).status_code == 200
    # The gov token at the commercial and the GCC Defender APIs, and at gov Graph.
    assert http.get(f"{base}/api/incidents", headers=bearer).status_code == 401
    assert http.get(f"{base}/_clouds/gcc/api/incidents", headers=bearer).status_code == 401
    graph = f"{base}/_clouds/gcc_high/v1.0/security/incidents"
    assert http.get(graph, headers=bearer).status_code == 401

    # A commercial tenant's token at the gov API.
    commercial = str(uuid.uuid4())
    devcloud.create_tenant(tenant_id=commercial)
    devcloud.set_consent(commercial, clouds_settings["client_id"], roles=["Incident.Read.All"])
    token = tokens.get_access_token(tenant_id=commercial, cloud="commercial")
    other = {"Authorization": f"Bearer {token}"}
    assert http.get(f"{base}/_clouds/commercial/api/incidents", headers=other).status_code == 200
    assert http.get(f"{base}/_clouds/gcc_high/api/incidents", headers=other).status_code == 401

    # A GCC High tenant does not exist in the commercial Entra ID, nor the other way round.
    with pytest.raises(errors.TenantNotFound):
        tokens.get_access_token(tenant_id=tid(gov), cloud="commercial")
    with pytest.raises(errors.TenantNotFound):
        tokens.get_access_token(tenant_id=commercial, cloud="gcc_high")


def test_the_consent_link_of_a_gcc_high_tenant_goes_to_the_us_login_host(db, settings):
    settings.MICROSOFT_LOGIN_BASE_URL = ""
    settings.MICROSOFT_CONSENT_BASE_URL = ""
    settings.MICROSOFT_CLOUD_CREDENTIALS = {
        "gcc_high": {"client_id": "gov-app-id", "client_secret": "x"},
        "dod": {},
    }
    link = ConsentLinkFactory(tenant=TenantFactory(cloud="gcc_high"))
    url = urlsplit(flow.start_consent(link=link))
    assert f"{url.scheme}://{url.netloc}" == "https://login.microsoftonline.us"
    assert url.path == "/organizations/v2.0/adminconsent"
    query = parse_qs(url.query)
    assert query["client_id"] == ["gov-app-id"]
    assert query["scope"] == [f"{GOV_DEFENDER}/.default"]

    graph_link = ConsentLinkFactory(tenant=TenantFactory(cloud="dod", source="graph"))
    query = parse_qs(urlsplit(flow.start_consent(link=graph_link)).query)
    assert query["scope"] == ["https://dod-graph.microsoft.us/.default"]
    commercial = ConsentLinkFactory(tenant=TenantFactory(cloud="commercial"))
    assert flow.start_consent(link=commercial).startswith("https://login.microsoftonline.com/")


def test_a_tenant_in_a_cloud_without_credentials_says_so(db, client, settings):
    settings.MICROSOFT_CLOUD_CREDENTIALS = {"gcc_high": {}, "dod": {}}
    admin = UserFactory(is_superuser=True, is_staff=True)
    client.force_login(admin)
    tenant = ConsentedTenantFactory(cloud="dod")
    page = client.get(f"/tenants/{tenant.pk}/").content.decode()
    assert "No app registration is configured for the DoD cloud" in page
    with pytest.raises(errors.CredentialInvalid):
        tenant.incident_client()
    commercial = ConsentedTenantFactory(cloud="commercial")
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "app", "secret"
    assert "No app registration" not in client.get(f"/tenants/{commercial.pk}/").content.decode()


def test_the_permission_table_and_landing_page_name_the_sources_permission(db, client):
    admin = UserFactory(is_superuser=True, is_staff=True)
    client.force_login(admin)
    graph = ConsentedTenantFactory(source="graph", granted_roles=["SecurityIncident.Read.All"])
    page = client.get(f"/tenants/{graph.pk}/").content.decode()
    assert "SecurityIncident.Read.All" in page and "Microsoft Graph" in page
    assert "missing" not in page.split("Permissions")[1].split("</table>")[0]
    defender = ConsentedTenantFactory(source="defender")
    page = client.get(f"/tenants/{defender.pk}/").content.decode()
    assert "Incident.Read.All" in page and "SecurityIncident" not in page

    link = ConsentLinkFactory(tenant=graph)
    client.logout()
    landing = client.get(f"/consent/{link.token}/").content.decode()
    assert "SecurityIncident.Read.All" in landing
    assert "<em>Microsoft Graph</em>" in landing


def test_only_a_superuser_switches_the_source(db, client):
    tenant = ConsentedTenantFactory(source="defender")
    group = GroupFactory()
    tenant.groups.add(group)
    staff = UserFactory(is_staff=True)
    staff.groups.add(group)
    client.force_login(staff)
    assert client.post(f"/tenants/{tenant.pk}/source/", {"source": "graph"}).status_code == 403
    tenant.refresh_from_db()
    assert tenant.source == "defender"
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    response = client.post(f"/tenants/{tenant.pk}/source/", {"source": "graph"})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.source == "graph" and tenant.incidents_watermark is None
