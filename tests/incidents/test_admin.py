"""The admin shows synced data read-only."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from partner_portal.incidents.models import SyncProblem, SyncRun
from partner_portal.incidents.store import problem_key
from tests.factories import AlertFactory, ConsentedTenantFactory, UserFactory


def test_incident_and_sync_run_pages_render_read_only(client, db):
    admin = UserFactory(username="root", is_superuser=True)
    client.force_login(admin)
    alert = AlertFactory(title="Suspicious PowerShell command line")
    incident = alert.incident
    incident.search.text = "multi-stage suspicious powershell command line"
    incident.search.save()
    SyncRun.objects.create(tenant=incident.tenant, started_at=timezone.now())
    listing = client.get(reverse("admin:incidents_incident_changelist"), {"q": "powershell"})
    assert listing.status_code == 200
    assert incident.name.encode() in listing.content
    detail = client.get(reverse("admin:incidents_incident_change", args=[incident.pk]))
    assert detail.status_code == 200
    assert b"Suspicious PowerShell command line" in detail.content
    assert b'name="_save"' not in detail.content
    assert client.get(reverse("admin:incidents_incident_add")).status_code == 403
    runs = client.get(reverse("admin:incidents_syncrun_changelist"), {"outcome__exact": "running"})
    assert runs.status_code == 200
    assert str(incident.tenant).encode() in runs.content


def test_sync_problems_are_listed_read_only_with_what_was_received(client, db):
    client.force_login(UserFactory(username="root", is_superuser=True))
    tenant = ConsentedTenantFactory(display_name="Hostile Ltd")
    now = timezone.now()
    problem = SyncProblem.objects.create(
        tenant=tenant,
        microsoft_id="9000003",
        key=problem_key("9000003"),
        error="BadResponse: An alert without alertId",
        raw_text='{"incidentId": 9000003, "incidentName": "a\\u0000b"}',
        first_seen=now,
        last_seen=now,
    )
    listing = client.get(reverse("admin:incidents_syncproblem_changelist"), {"q": "9000003"})
    assert b"Hostile Ltd" in listing.content
    assert b"An alert without alertId" in listing.content
    detail = client.get(reverse("admin:incidents_syncproblem_change", args=[problem.pk]))
    assert b"a\\u0000b" in detail.content
    assert b'name="_save"' not in detail.content
    assert client.get(reverse("admin:incidents_syncproblem_add")).status_code == 403
