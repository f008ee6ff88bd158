"""The sync's outbox: one IncidentChange per incident version that changed something a rule
can ask about, written in the page's transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from partner_portal.incidents import outbox
from partner_portal.incidents import store as store_module
from partner_portal.incidents.models import (
    ChangeKind,
    IncidentChange,
    SyncOutcome,
    SyncProblem,
    SyncRun,
)
from partner_portal.microsoft.defender import format_time, parse_incident
from tests.factories import ConsentedTenantFactory

T0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def item(incident_id=1, minutes=0, **fields):
    data = {
        "incidentId": incident_id,
        "incidentName": "Ransomware on FS01",
        "severity": "Medium",
        "status": "Active",
        "assignedTo": None,
        "createdTime": format_time(T0),
        "lastUpdateTime": format_time(T0 + timedelta(minutes=minutes)),
        **fields,
    }
    return parse_incident(data)


@pytest.fixture
def tenant(db):
    tenant = ConsentedTenantFactory()
    # Not the first sync: changes are alerts, not history.
    SyncRun.objects.create(tenant=tenant, started_at=T0, outcome=SyncOutcome.SUCCESS)
    return tenant


def store(tenant, *items):
    store_module.store_page(tenant=tenant, incidents=list(items), synced_at=timezone.now())
    return list(IncidentChange.objects.filter(tenant=tenant).order_by("pk"))


def test_a_new_incident_is_one_change_of_kind_new(tenant):
    (change,) = store(tenant, item())
    assert change.kinds == [ChangeKind.NEW]
    assert change.version == T0
    assert change.after["severity"] == "Medium" and change.before == {}
    assert not change.imported


@pytest.mark.parametrize(
    ("fields", "kinds"),
    [
        ({"severity": "High"}, [ChangeKind.SEVERITY_RAISED]),
        ({"severity": "Low"}, []),
        ({"status": "InProgress"}, [ChangeKind.STATUS_CHANGED]),
        ({"status": "inProgress"}, [ChangeKind.STATUS_CHANGED]),  # Graph's spelling
        ({"assignedTo": "ana@msp.example"}, [ChangeKind.REASSIGNED]),
        ({"comments": [{"comment": "looking"}]}, []),
    ],
)
def test_what_changed_is_recorded(tenant, fields, kinds):
    store(tenant, item())
    changes = store(tenant, item(minutes=5, **fields))
    assert [c.kinds for c in changes[1:]] == ([kinds] if kinds else [])


def test_reopened_is_a_status_change_from_closed_to_open(tenant):
    store(tenant, item(status="Resolved"))
    changes = store(tenant, item(minutes=5, status="Active"))
    assert changes[-1].kinds == [ChangeKind.STATUS_CHANGED, ChangeKind.REOPENED]
    assert changes[-1].before["status"] == "Resolved"


def test_the_same_version_again_writes_nothing(tenant):
    store(tenant, item())
    store(tenant, item(minutes=5, status="Resolved"))
    # The overlap window, a re-run after a crash, a full re-sync: the same versions again.
    for _ in range(3):
        store(tenant, item(minutes=5, status="Resolved"))
    assert IncidentChange.objects.filter(tenant=tenant).count() == 2


def test_the_first_sync_of_a_tenant_is_marked_imported(db):
    tenant = ConsentedTenantFactory()
    changes = store(tenant, item(1), item(2), item(3))
    assert [c.imported for c in changes] == [True, True, True]


def test_hostile_text_is_made_storable_in_jsonb():
    # (Storing such an incident is the sync's business; the outbox's JSON must never fail.)
    values = outbox._values(
        {"name": "a\x00b\ud800c" * 300, "severity": None, "tags": ["x\x00", 7]}
        | {"status": "Critical", "assigned_to": ""}
    )
    assert values["name"].startswith("ab?c") and len(values["name"]) <= 500
    assert values["severity"] == "" and values["tags"] == ["x"]
    assert values["status"] == "Critical"


def test_a_failed_page_writes_no_change(tenant, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_module, "_store_alerts", broken)  # the alerts' step
    store(tenant, item())  # the incident becomes a sync problem (per-item isolation)
    assert not IncidentChange.objects.exists()
    assert SyncProblem.objects.get(tenant=tenant).error == "RuntimeError: disk full"
