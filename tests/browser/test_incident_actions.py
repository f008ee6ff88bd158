"""Working incidents in Chromium against devcloud: assign to me and resolve with a
classification from the incident page; bulk-resolve 3 incidents from the list (a real
worker runs the job)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from partner_portal.incidents.models import Incident
from partner_portal.microsoft.client import READWRITE_ROLE
from tests.chromium import sign_in
from tests.factories import GroupFactory, UserFactory
from tests.incidents.test_actions import truth, writable_tenant

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


@pytest.fixture
def technician(transactional_db, portal, settings):
    settings.MICROSOFT_INCIDENT_UPDATES = True
    team = GroupFactory(name="soc")
    team.permissions.add(Permission.objects.get(codename="act_on_incident"))
    user = UserFactory(username="tech", email="tech@msp.example", groups=[team])
    user.set_password(PASSWORD)
    user.save()
    return user, team


def test_assign_to_me_and_resolve_with_a_classification(
    page, live_server, devcloud, portal, technician, artifacts_dir
):
    user, team = technician
    tenant = writable_tenant(devcloud, portal, count=6, groups=[team])
    assert READWRITE_ROLE in tenant.granted_roles
    incident = (
        Incident.objects.filter(tenant=tenant, redirect_incident_id=None)
        .exclude(status="Resolved")
        .first()
    )
    sign_in(page, live_server, "tech", PASSWORD)
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")

    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator('[data-field="assigned_to"]')).to_have_text("tech@msp.example")
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(1)  # each answer adds its row to the history
    page.locator("#set-status").select_option("Resolved")
    page.get_by_role("button", name="Set status").click()
    expect(rows).to_have_count(2)
    expect(page.locator('[data-field="status"]')).to_have_text("Resolved")
    page.locator("#classify-pair").select_option("TruePositive:Malware")
    page.get_by_role("button", name="Classify").click()
    expect(rows).to_have_count(3)
    expect(page.locator('[data-field="determination"]')).to_have_text("Malware")
    expect(page.locator('[data-field="classification"]')).to_have_text("True positive")
    expect(page.locator('[data-outcome="done"]')).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "incident-actions.png"), full_page=True)

    want = truth(devcloud, incident)
    assert (want["assignedTo"], want["status"], want["classification"], want["determination"]) == (
        "tech@msp.example",
        "Resolved",
        "TruePositive",
        "Malware",
    )


def test_bulk_resolve_three_incidents_from_the_list(
    page, live_server, devcloud, portal, technician, start_worker, artifacts_dir
):
    user, team = technician
    tenant = writable_tenant(devcloud, portal, count=8, groups=[team])
    chosen = list(
        Incident.objects.filter(tenant=tenant, redirect_incident_id=None)
        .exclude(status="Resolved")
        .order_by("-last_update_time")[:3]
    )
    assert len(chosen) == 3
    start_worker(concurrency=1, env={"MICROSOFT_INCIDENT_UPDATES": "true"})
    sign_in(page, live_server, "tech", PASSWORD)
    page.goto(f"{live_server.url}/")
    for incident in chosen:
        page.locator(f'input[name="incident"][value^="{incident.pk}@"]').check()
    expect(page.locator("#bulk-count")).to_have_text("Selected incidents: 3")
    page.locator("#bulk-action").select_option("status")
    page.locator("#bulk-status").select_option("Resolved")
    page.get_by_role("button", name="Apply to selected").click()
    page.wait_for_url("**/incidents/jobs/**")
    expect(page.locator("#job-progress")).to_have_attribute("data-running", "0", timeout=60_000)
    expect(page.locator('#job-progress tr[data-outcome="done"]')).to_have_count(3)
    page.screenshot(path=str(artifacts_dir / "bulk-action-job.png"), full_page=True)
    for incident in chosen:
        assert truth(devcloud, incident)["status"] == "Resolved"


def test_select_all_on_the_page_ticks_every_row(page, live_server, devcloud, portal, technician):
    user, team = technician
    writable_tenant(devcloud, portal, count=4, groups=[team])
    sign_in(page, live_server, "tech", PASSWORD)
    page.goto(f"{live_server.url}/")
    page.locator("#select-page").check()
    boxes = page.locator('input[name="incident"]')
    expect(page.locator("#bulk-count")).to_have_text(f"Selected incidents: {boxes.count()}")
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
