"""Storing a page: one upsert per table, alerts compared and rewritten only when they changed,
the same rows on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partner_portal.incidents.models import Alert, Incident
from partner_portal.incidents.store import search_text, store_page
from partner_portal.microsoft.defender import parse_incident
from tests.factories import ConsentedTenantFactory


def incident(n: int, *alerts: dict, minute: int = 0, **fields) -> object:
    return parse_incident(
        {
            "incidentId": n,
            "incidentName": f"Incident {n}",
            "lastUpdateTime": f"2026-01-02T03:{minute:02}:05.1234567Z",
            "alerts": list(alerts),
            **fields,
        }
    )


def alert(alert_id: str, **fields) -> dict:
    return {"alertId": alert_id, "title": f"Alert {alert_id}", **fields}


def versions(model: type[Alert | Incident] = Alert, field: str = "id") -> dict:
    """Each row's `field` by Microsoft ID and, on PostgreSQL, its row version (xmin: a new
    one per UPDATE)."""
    if connection.vendor != "postgresql":
        return {r.microsoft_id: (getattr(r, field), "") for r in model.objects.all()}
    with connection.cursor() as cursor:
        table = model._meta.db_table
        cursor.execute(f"SELECT microsoft_id, {field}, xmin::text FROM {table}")  # noqa: S608
        return {key: (value, xmin) for key, value, xmin in cursor.fetchall()}


def test_alerts_are_rewritten_only_when_they_changed(db):
    tenant = ConsentedTenantFactory()
    first = [
        incident(1, alert("a"), alert("b"), alert("c", entities=[{"accountName": "eve"}])),
        incident(2, alert("d")),
    ]
    store_page(tenant=tenant, incidents=first, synced_at=timezone.now())
    before = versions()

    again = [
        incident(1, alert("a"), alert("b", title="Renamed"), alert("e"), minute=1),
        incident(2, alert("d"), minute=1),
    ]
    assert store_page(tenant=tenant, incidents=again, synced_at=timezone.now()) == (0, 2)
    after = versions()
    assert set(after) == {"a", "b", "d", "e"}  # c is gone, e is new
    assert after["a"] == before["a"] and after["d"] == before["d"]  # untouched
    assert after["b"][0] == before["b"][0]  # updated in place, not deleted and reinserted
    if connection.vendor == "postgresql":
        assert after["b"][1] != before["b"][1]
    assert Alert.objects.get(microsoft_id="b").title == "Renamed"
    assert Incident.objects.get(microsoft_id=1).alert_count == 3
    assert not Alert.objects.filter(microsoft_id="c").exists()

    # An incident that lost all its alerts keeps none.
    store_page(tenant=tenant, incidents=[incident(2, minute=2)], synced_at=timezone.now())
    assert not Alert.objects.filter(incident__microsoft_id=2).exists()
    assert set(Alert.objects.values_list("microsoft_id", flat=True)) == {"a", "b", "e"}


def test_an_alert_edited_outside_the_sync_is_rewritten_by_the_next_page(db):
    tenant = ConsentedTenantFactory()
    page = [incident(1, alert("a"))]
    store_page(tenant=tenant, incidents=page, synced_at=timezone.now())
    edited = Alert.objects.get(microsoft_id="a")
    edited.title = "Edited in the admin"
    edited.save()
    store_page(tenant=tenant, incidents=page, synced_at=timezone.now())  # the same answer
    assert Alert.objects.get(microsoft_id="a").title == "Alert a"


def test_an_incident_read_again_unchanged_is_left_as_it_is(db):
    # A reconciliation pass re-reads every incident; rewriting one with its own values
    # cost a row version and, in a full page, an entry in each of its indexes.
    tenant = ConsentedTenantFactory()
    page = [
        incident(1, alert("a"), tags=["x"], comments=[{"comment": "c"}]),
        incident(2, alert("b"), severity="High"),
        incident(3),
    ]
    first = datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
    store_page(tenant=tenant, incidents=page, synced_at=first)
    before, alerts_before = versions(Incident, "synced_at"), versions()

    again = [
        incident(1, alert("a"), tags=["x"], comments=[{"comment": "c"}]),  # the same
        incident(2, alert("b", status="Resolved"), severity="High"),  # only an alert changed
        incident(3, status="Resolved"),  # changed, its lastUpdateTime not (Microsoft's clock)
    ]
    later = datetime(2026, 1, 2, 4, 5, tzinfo=UTC)
    assert store_page(tenant=tenant, incidents=again, synced_at=later) == (0, 2)  # 2 and 3
    after, alerts_after = versions(Incident, "synced_at"), versions()
    assert after[1] == before[1] and after[2] == before[2]  # not written: synced_at kept
    assert after[3][0] == later and Incident.objects.get(microsoft_id=3).status == "Resolved"
    if connection.vendor == "postgresql":
        assert after[3][1] != before[3][1]
    # The unchanged incident's alerts are still compared (its key comes from the snapshot).
    assert alerts_after["a"] == alerts_before["a"]
    assert alerts_after["b"][0] == alerts_before["b"][0]
    assert Alert.objects.get(microsoft_id="b").status == "Resolved"

    # Something only the raw JSON holds is a change too.
    store_page(
        tenant=tenant,
        incidents=[incident(1, alert("a"), tags=["x"], comments=[{"comment": "c"}], extra=1)],
        synced_at=later,
    )
    row = Incident.objects.get(microsoft_id=1)
    assert (row.synced_at, row.raw["extra"]) == (later, 1)


def search_words(tenant) -> dict:
    """The tenant's incidents' search words by Microsoft ID and, on PostgreSQL, their row
    version."""
    xmin = "s.xmin::text" if connection.vendor == "postgresql" else "''"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.microsoft_id, s.text, {xmin} FROM incidents_incidentsearch s "  # noqa: S608
            "JOIN incidents_incident i ON i.id = s.incident_id AND i.tenant_id = s.tenant_id "
            "WHERE s.tenant_id = %s",
            [tenant.pk],
        )
        return {key: (text, version) for key, text, version in cursor.fetchall()}


def test_search_words_are_written_only_when_they_change(db):
    # Their trigram indexes hold ~100 entries an incident: a change at Microsoft that
    # leaves the words as they were (a status, an assignee) must not write them again.
    tenant = ConsentedTenantFactory()
    store_page(
        tenant=tenant,
        incidents=[incident(1, alert("a")), incident(2, alert("b"))],
        synced_at=timezone.now(),
    )
    before = search_words(tenant)
    assert before[1][0] == "incident 1 alert a"
    changed = [
        incident(1, alert("a", status="Resolved"), minute=1, status="Resolved"),
        incident(2, alert("b"), alert("c", title="Mimikatz on LAPTOP-7"), minute=1),
        incident(3, alert("d")),
    ]
    store_page(tenant=tenant, incidents=changed, synced_at=timezone.now())
    after = search_words(tenant)
    assert after[1] == before[1]  # not written (on PostgreSQL: the same row version)
    assert after[2][0] == "incident 2 alert b mimikatz on laptop-7"
    assert after[3][0] == "incident 3 alert d"
    if connection.vendor == "postgresql":
        assert after[2][1] != before[2][1]


def test_an_incident_edited_outside_the_sync_is_rewritten_by_the_next_page(db):
    tenant = ConsentedTenantFactory()
    page = [incident(1, severity="Low")]
    store_page(tenant=tenant, incidents=page, synced_at=timezone.now())
    Incident.objects.filter(microsoft_id=1).update(severity="High", severity_rank=4)
    store_page(tenant=tenant, incidents=page, synced_at=timezone.now())  # the same answer
    assert Incident.objects.values_list("severity", "severity_rank").get() == ("Low", 2)


CHANGES = {
    "nothing": {},
    "status": {"status": "Resolved"},
    "assignee": {"assignedTo": "bob@example.com"},
    "tags": {"tags": ["x", "y"]},
    "raw only": {"extra": {"n": 1}},
    "alert only": {"alert_status": "Resolved"},
    "renamed": {"incidentName": "Renamed on LAPTOP-9"},  # new search words
}


@given(changes=st.lists(st.sampled_from(sorted(CHANGES)), min_size=1, max_size=6))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_page_read_again_stores_exactly_what_changed(db, changes):
    tenant = ConsentedTenantFactory()

    def page(change_of):
        items = []
        for n, change in enumerate(change_of, start=1):
            fields = {"tags": ["x"], **CHANGES[change]}
            status = fields.pop("alert_status", "New")
            items.append(incident(n, alert(f"a{n}", status=status), **fields))
        return items

    first, later = datetime(2026, 1, 2, 4, 0, tzinfo=UTC), datetime(2026, 1, 2, 4, 5, tzinfo=UTC)
    store_page(tenant=tenant, incidents=page(["nothing"] * len(changes)), synced_at=first)
    words_before = search_words(tenant)
    second = page(changes)
    stored = store_page(tenant=tenant, incidents=second, synced_at=later)
    assert stored == (0, sum(change != "nothing" for change in changes))
    rows = {i.microsoft_id: i for i in Incident.objects.filter(tenant=tenant)}
    words = search_words(tenant)
    for n, (change, item) in enumerate(zip(changes, second, strict=True), start=1):
        assert words[n][0] == search_text(item)
        assert (words[n] == words_before[n]) is (change != "renamed"), change
        row = rows[n]
        assert (row.status, row.assigned_to, row.tags, row.raw) == (
            item.status,
            item.assigned_to,
            item.tags,
            item.raw,
        )
        rewritten = change not in ("nothing", "alert only")
        assert row.synced_at == (later if rewritten else first), change
        assert Alert.objects.get(incident=row).status == item.alerts[0].status


def test_every_column_reads_back_as_parsed(db):
    tenant = ConsentedTenantFactory()
    item = incident(
        7,
        alert(
            "x",
            severity="high",
            firstActivity="2026-01-01T00:00:00Z",
            lastActivity="2026-01-01T00:00:01.5Z",
            mitreTechniques=["T1059"],
            devices=[{"deviceDnsName": "fs01", "n": 2**62, "f": 0.1, "ok": True}],
        ),
        severity="Medium",
        status="Active",
        assignedTo="ann@example.com",
        tags=["a", "ß", "😀"],
        comments=[{"comment": 'quote " and \\ and \n'}],
        redirectIncidentId=9,
        createdTime="2025-12-31T23:59:59Z",
        incidentUri="https://security.microsoft.com/incidents/7",
    )
    synced_at = timezone.now()
    store_page(tenant=tenant, incidents=[item], synced_at=synced_at)
    row = Incident.objects.get(tenant=tenant, microsoft_id=7)
    assert (row.name, row.severity, row.severity_rank, row.status) == (
        "Incident 7",
        "Medium",
        3,
        "Active",
    )
    assert (row.assigned_to, row.tags, row.comments) == (item.assigned_to, item.tags, item.comments)
    assert (row.redirect_incident_id, row.portal_url) == (9, item.incident_uri)
    assert row.created_time == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert row.last_update_time == item.last_update_time
    assert (row.raw, row.synced_at, row.text_repaired) == (item.raw, synced_at, False)
    stored = row.alerts.get()
    (parsed,) = item.alerts
    for name in ("microsoft_id", "title", "severity", "mitre_techniques", "devices", "raw"):
        assert getattr(stored, name) == getattr(
            parsed, "alert_id" if name == "microsoft_id" else name
        )
    assert (stored.first_activity, stored.last_activity) == (
        parsed.first_activity,
        parsed.last_activity,
    )
    # Ordered and filtered as Django writes them (SQLite keeps datetimes as text).
    assert Incident.objects.filter(last_update_time__gte=item.last_update_time).count() == 1
    assert Incident.objects.filter(last_update_time__gt=item.last_update_time).count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's TOAST")
def test_big_json_is_compressed_with_lz4_when_the_server_has_it(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        (has_lz4,) = cursor.fetchone()
    tenant = ConsentedTenantFactory()
    entities = [{"accountName": f"user{n}", "n": n} for n in range(400)]  # ~10 KB of JSON
    item = incident(1, alert("a", entities=entities))
    store_page(tenant=tenant, incidents=[item], synced_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_compression(raw) FROM incidents_alert")
        assert cursor.fetchone() == ("lz4" if has_lz4 else "pglz",)
