"""Shared helpers for the sync tests: a devcloud tenant with consent, and the comparison of
the database with devcloud's ground truth, field by field; the summary's maintained counts
against a fresh count."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC

from partner_portal.incidents.models import Alert, Incident, IncidentCount, IncidentDayCount
from partner_portal.microsoft.defender import parse_time
from tests.factories import ConsentedTenantFactory


def make_tenant(devcloud, app, *, count: int = 0, seed: int = 1, **fields):
    """A consented tenant in devcloud (with `count` incidents) and in the portal."""
    tid = str(uuid.uuid4())
    devcloud.create_tenant(tenant_id=tid)
    devcloud.set_consent(tid, app["client_id"], roles=["Incident.Read.All"])
    if count:
        devcloud.generate_incidents(tid, count, seed=seed)
    return ConsentedTenantFactory(entra_tenant_id=uuid.UUID(tid), **fields)


def tid(tenant) -> str:
    return str(tenant.entra_tenant_id)


def assert_db_matches(devcloud, tenant) -> None:
    """The tenant's incidents and alerts in the database equal devcloud's, field by field,
    with no extra and no duplicate rows."""
    truth = {i["incidentId"]: i for i in devcloud.incidents(tid(tenant))}
    rows = {i.microsoft_id: i for i in Incident.objects.filter(tenant=tenant)}
    assert Incident.objects.filter(tenant=tenant).count() == len(rows)  # no duplicates
    missing, extra = set(truth) - set(rows), set(rows) - set(truth)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    alerts_by_incident: dict[int, dict[str, Alert]] = {}
    for alert in Alert.objects.filter(incident__tenant=tenant).select_related("incident"):
        alerts_by_incident.setdefault(alert.incident.microsoft_id, {})[alert.microsoft_id] = alert
    for incident_id, want in truth.items():
        got = rows[incident_id]
        assert got.name == want.get("incidentName", "")
        assert got.severity == want.get("severity", "")
        assert got.status == want.get("status", "")
        assert got.classification == want.get("classification", "")
        assert got.determination == want.get("determination", "")
        assert got.assigned_to == (want.get("assignedTo") or "")
        assert got.tags == want.get("tags", [])
        assert got.comments == want.get("comments", [])
        assert got.redirect_incident_id == want.get("redirectIncidentId")
        assert got.created_time == parse_time(want["createdTime"])
        assert got.last_update_time == parse_time(want["lastUpdateTime"]), incident_id
        assert got.portal_url == want.get("incidentUri", "")
        assert got.raw == {k: v for k, v in want.items() if k != "alerts"}
        want_alerts = {a["alertId"]: a for a in want.get("alerts", [])}
        got_alerts = alerts_by_incident.get(incident_id, {})
        assert set(got_alerts) == set(want_alerts), incident_id
        assert got.alert_count == len(want_alerts)
        for alert_id, wa in want_alerts.items():
            ga = got_alerts[alert_id]
            assert ga.title == wa.get("title", "")
            assert ga.description == wa.get("description", "")
            assert ga.severity == wa.get("severity", "")
            assert ga.category == wa.get("category", "")
            assert ga.status == wa.get("status", "")
            assert ga.detection_source == wa.get("detectionSource", "")
            assert ga.service_source == wa.get("serviceSource", "")
            assert ga.mitre_techniques == wa.get("mitreTechniques", [])
            assert ga.first_activity == parse_time(wa.get("firstActivity"))
            assert ga.last_activity == parse_time(wa.get("lastActivity"))
            assert ga.devices == wa.get("devices", [])
            assert ga.entities == wa.get("entities", [])
            assert ga.raw == wa


def fresh_counts() -> tuple[Counter, Counter]:
    """What the counts should be: the incidents counted afresh, in Python."""
    by_status: Counter = Counter()
    by_day: Counter = Counter()
    for tenant, severity, status, created in Incident.objects.values_list(
        "tenant_id", "severity", "status", "created_time"
    ):
        by_status[(tenant, severity, status)] += 1
        by_day[(tenant, created.astimezone(UTC).date(), severity)] += 1
    return by_status, by_day


def kept_counts() -> tuple[Counter, Counter]:
    """The maintained counts, zero rows left out (a count may fall back to zero)."""
    by_status = Counter(
        {
            (t, sev, st): n
            for t, sev, st, n in IncidentCount.objects.values_list(
                "tenant_id", "severity", "status", "n"
            )
            if n
        }
    )
    by_day = Counter(
        {
            (t, day, sev): n
            for t, day, sev, n in IncidentDayCount.objects.values_list(
                "tenant_id", "day", "severity", "n"
            )
            if n
        }
    )
    return by_status, by_day


def assert_counts_exact() -> None:
    """The summary's maintained counts (incidents/counters.py) equal a fresh count."""
    assert kept_counts() == fresh_counts()
