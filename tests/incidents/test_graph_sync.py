"""The sync through Microsoft Graph's security API, against devcloud over TLS with real MSAL
tokens: the same rows as devcloud's Graph answers, field by field, and the same rows as the
Defender API's when a tenant switches source."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from partner_portal.consent.flow import verify_access
from partner_portal.incidents import sync
from partner_portal.incidents.models import Alert, Incident, SyncOutcome
from partner_portal.microsoft import errors, tokens
from partner_portal.microsoft.defender import parse_time
from partner_portal.microsoft.graph import split_evidence
from partner_portal.microsoft.vocabulary import Kind, normalise
from partner_portal.tenants import changes
from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, UserFactory
from tests.incidents.helpers import assert_db_matches, tid

pytestmark = pytest.mark.integration

ROLES = ["Incident.Read.All", "SecurityIncident.Read.All"]


@pytest.fixture(autouse=True)
def _local_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def make_tenant(devcloud, app, *, count: int, source: str = "graph") -> Tenant:
    tenant_id = str(uuid.uuid4())
    devcloud.create_tenant(tenant_id=tenant_id)
    devcloud.set_consent(tenant_id, app["client_id"], roles=ROLES)
    devcloud.generate_incidents(tenant_id, count, seed=7)
    return ConsentedTenantFactory(
        entra_tenant_id=uuid.UUID(tenant_id), source=source, granted_roles=ROLES
    )


def graph_truth(devcloud, tenant) -> dict[int, dict]:
    """Every incident as devcloud's Graph answers it, read here with our own token and
    requests, following nextLink."""
    token = tokens.get_access_token(
        tenant_id=tid(tenant), resource=tokens.resource_of("commercial", "graph")
    )
    session = devcloud.session()
    url = f"{devcloud.base_url}/v1.0/security/incidents?$expand=alerts&$top=50"
    found: dict[int, dict] = {}
    while url:
        body = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        found |= {int(i["id"]): i for i in body["value"]}
        url = body.get("@odata.nextLink")
    return found


def assert_db_matches_graph(devcloud, tenant) -> None:
    truth = graph_truth(devcloud, tenant)
    rows = {i.microsoft_id: i for i in Incident.objects.filter(tenant=tenant)}
    assert set(rows) == set(truth)
    assert Incident.objects.filter(tenant=tenant).count() == len(truth)
    for incident_id, want in truth.items():
        got = rows[incident_id]
        assert got.name == want["displayName"]
        assert got.severity == normalise(Kind.SEVERITY, want["severity"])
        assert got.status == normalise(Kind.STATUS, want["status"])
        assert got.classification == normalise(Kind.CLASSIFICATION, want["classification"])
        assert got.determination == normalise(Kind.DETERMINATION, want["determination"])
        assert got.assigned_to == (want["assignedTo"] or "")
        assert got.tags == want["customTags"]
        assert [c["comment"] for c in got.comments] == [c["comment"] for c in want["comments"]]
        assert [c["createdBy"] for c in got.comments] == [
            c["createdByDisplayName"] for c in want["comments"]
        ]
        redirect = want["redirectIncidentId"]
        assert got.redirect_incident_id == (int(redirect) if redirect else None)
        assert got.created_time == parse_time(want["createdDateTime"])
        assert got.last_update_time == parse_time(want["lastUpdateDateTime"])
        assert got.portal_url == want["incidentWebUrl"]
        assert got.raw == {k: v for k, v in want.items() if k != "alerts"}
        alerts = {a.microsoft_id: a for a in Alert.objects.filter(incident=got)}
        want_alerts = {a["id"]: a for a in want["alerts"]}
        assert set(alerts) == set(want_alerts)
        for alert_id, wa in want_alerts.items():
            ga = alerts[alert_id]
            assert ga.title == wa["title"]
            assert ga.severity == normalise(Kind.SEVERITY, wa["severity"])
            assert ga.status == normalise(Kind.ALERT_STATUS, wa["status"])
            assert ga.category == (wa["category"] or "")
            assert ga.mitre_techniques == wa["mitreTechniques"]
            assert ga.first_activity == parse_time(wa["firstActivityDateTime"])
            assert ga.raw == wa
            # Evidence: every item kept as received, and mapped onto devices and entities.
            devices, entities = split_evidence(wa["evidence"])
            assert ga.devices == devices
            assert ga.entities == entities
            assert len(devices) + len(entities) == len(wa["evidence"])


def test_sync_via_graph_equals_devclouds_graph_answers_across_pages_of_50(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=130)
    devcloud.clear_requests()
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS, run.error_message
    lists = [
        e for e in devcloud.requests_log(tid(tenant))["entries"]
        if e["endpoint"] == "graph_list_incidents"
    ]  # fmt: skip
    assert len(lists) == 3  # 50 + 50 + 30
    assert_db_matches_graph(devcloud, tenant)
    # Evidence reached the rows: devices and entities of some alert.
    assert Alert.objects.filter(incident__tenant=tenant).exclude(devices=[]).exists()
    assert Alert.objects.filter(incident__tenant=tenant).exclude(entities=[]).exists()


def test_the_list_asks_for_alerts_top_50_and_the_watermark_filter(
    db, devcloud, devcloud_settings, monkeypatch
):
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    sync.sync_tenant(tenant=tenant)
    client = tenant.incident_client()
    urls: list[str] = []
    send = client.session.request

    def spy(method, url, **kwargs):
        urls.append(url)
        return send(method, url, **kwargs)

    # The thread's shared session: put back afterwards.
    monkeypatch.setattr(client.session, "request", spy)
    tenant.refresh_from_db()
    list(client.incident_pages(since=tenant.incidents_watermark))
    query = parse_qs(urlsplit(urls[0]).query)
    assert urlsplit(urls[0]).path == "/v1.0/security/incidents"
    assert query["$expand"] == ["alerts"] and query["$top"] == ["50"]
    assert query["$filter"][0].startswith("lastUpdateDateTime ge ")


def test_a_next_link_to_another_host_is_refused_before_sending_the_token(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=1)
    client = tenant.incident_client()
    pages = client.incident_pages(start_url="https://evil.example/v1.0/security/incidents")
    with pytest.raises(errors.BadResponse):
        next(pages)


def test_switching_source_resyncs_onto_the_same_rows(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=60, source="defender")
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS
    assert_db_matches(devcloud, tenant)
    incident_pks = dict(Incident.objects.filter(tenant=tenant).values_list("microsoft_id", "pk"))
    alert_ids = set(
        Alert.objects.filter(incident__tenant=tenant).values_list("incident_id", "microsoft_id")
    )
    admin = UserFactory(is_superuser=True, is_staff=True)

    assert changes.switch_source(tenant=tenant, source="graph", actor=admin)
    tenant.refresh_from_db()
    assert tenant.source == "graph" and tenant.incidents_watermark is None
    assert tenant.consent_state == Tenant.ConsentState.PENDING
    verify_access(tenant=tenant)
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    assert tenant.granted_roles == ["SecurityIncident.Read.All"]
    devcloud.clear_requests()
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS, run.error_message
    endpoints = devcloud.requests_log(tid(tenant))["by_endpoint"]
    assert endpoints["graph_list_incidents"] == 2  # 50 + 10
    assert not {"list_incidents", "get_incident"} & set(endpoints)

    # The same rows: no incident or alert added, none lost.
    assert dict(Incident.objects.filter(tenant=tenant).values_list("microsoft_id", "pk")) == (
        incident_pks
    )
    assert (
        set(
            Alert.objects.filter(incident__tenant=tenant).values_list("incident_id", "microsoft_id")
        )
        == alert_ids
    )
    assert_db_matches_graph(devcloud, tenant)
    assert not changes.switch_source(tenant=tenant, source="graph", actor=admin)


def test_graph_has_its_own_budget_and_its_429s_carry_retry_after(
    db, devcloud, devcloud_settings, settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=1)
    settings.GRAPH_CALLS_PER_MINUTE = 2
    settings.DEFENDER_CALLS_PER_MINUTE = 1
    client = tenant.incident_client()
    assert client.get_incident(999999999) is None
    assert client.get_incident(999999999) is None
    with pytest.raises(errors.Throttled) as budget:
        client.get_incident(999999999)
    assert budget.value.code == "budget" and budget.value.retry_after >= 1

    settings.GRAPH_CALLS_PER_MINUTE = 150
    devcloud.set_limits(per_minute=2)  # the two calls above used it up at Microsoft
    fresh = tenant.incident_client()
    with pytest.raises(errors.Throttled) as microsoft:
        fresh.get_incident(999999999)
    assert microsoft.value.status == 429 and microsoft.value.retry_after >= 1


def test_the_incident_page_shows_a_graph_alerts_evidence(db, client, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    sync.sync_tenant(tenant=tenant)
    alert = Alert.objects.filter(incident__tenant=tenant).exclude(devices=[]).first()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    page = client.get(f"/incidents/{alert.incident_id}/").content.decode()
    section = page.split('id="evidence-h"')[1].split("</section>")[0]
    device = next(e for e in alert.raw["evidence"] if "deviceDnsName" in e)
    assert device["deviceDnsName"] in section
    assert device["verdict"] in section and device["remediationStatus"] in section
    # The same device in the Devices card, as a Defender-synced incident shows it.
    assert device["deviceDnsName"] in page.split('id="devices-h"')[1].split("</section>")[0]


@pytest.mark.parametrize("source", ["graph", "defender"])
def test_updates_and_comments_reach_microsoft_through_either_source(
    db, devcloud, devcloud_settings, settings, source
):
    settings.MICROSOFT_INCIDENT_UPDATES = True
    tenant = make_tenant(devcloud, devcloud_settings, count=3, source=source)
    devcloud.set_consent(
        tid(tenant),
        devcloud_settings["client_id"],
        roles=["Incident.ReadWrite.All", "SecurityIncident.ReadWrite.All"],
    )
    client = tenant.incident_client()
    assert client.check_access()
    target = devcloud.incidents(tid(tenant))[0]
    updated = client.update_incident(
        target["incidentId"],
        status="Resolved",
        classification="TruePositive",
        determination="Malware",
        tags=["portal"],
    )
    assert updated is not None and updated.incident_id == target["incidentId"]
    assert (updated.status, updated.classification, updated.determination) == (
        "Resolved",
        "TruePositive",
        "Malware",
    )
    client.add_comment(target["incidentId"], "Looked at it")
    truth = next(
        i for i in devcloud.incidents(tid(tenant)) if i["incidentId"] == target["incidentId"]
    )
    assert (truth["status"], truth["classification"], truth["determination"]) == (
        "Resolved",
        "TruePositive",
        "Malware",
    )
    assert truth["tags"] == ["portal"]
    assert truth["comments"][-1]["comment"] == "Looked at it"
    assert client.get_incident(999999999) is None
    assert client.update_incident(999999999, status="Active") is None
