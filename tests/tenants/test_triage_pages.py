"""The tenant pages for triage: open counts in the list, names that can be told apart,
buttons that say why they are off, the sync box that refreshes itself, plain words for
pending permissions, superseded links and the activity log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent.models import ConsentLink
from partner_portal.incidents import tasks
from partner_portal.incidents.models import SyncOutcome, SyncRun
from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, TenantFactory
from tests.incidents.dashboard_data import make_incident


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.sync_tenant, "delay_on_commit", lambda **kw: calls.append(kw))
    return calls


def detail(client, tenant) -> str:
    return client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant.pk})).content.decode()


def status(client, tenant) -> str:
    url = reverse("incidents:sync_status", kwargs={"tenant_pk": tenant.pk})
    return client.get(url).content.decode()


def test_the_tenant_list_shows_open_high_and_medium_counts(alice_client, tenant_a, team_a):
    for severity, status_ in [("High", "Active"), ("High", "InProgress"), ("High", "Resolved")]:
        make_incident(tenant_a, severity=severity, status=status_)
    make_incident(tenant_a, severity="Medium", status="Active")
    quiet = ConsentedTenantFactory(display_name="Quiet", groups=[team_a])
    response = alice_client.get(reverse("tenants:list"))
    tenants = {t.pk: t for t in response.context["page"]}
    assert (tenants[tenant_a.pk].open_high, tenants[tenant_a.pk].open_medium) == (2, 1)
    assert (tenants[quiet.pk].open_high, tenants[quiet.pk].open_medium) == (0, 0)
    html = response.content.decode()
    assert f"?tenant={tenant_a.pk}&amp;status=open&amp;severity=High" in html


@pytest.mark.parametrize("name", ["Customer Dup", "customer dup", "  CUSTOMER   DUP "])
def test_a_second_customer_of_the_same_name_is_refused(alice_client, team_a, name):
    TenantFactory(display_name="Customer Dup", groups=[team_a])
    response = alice_client.post(
        reverse("tenants:create"),
        {"display_name": name, "cloud": "commercial", "groups": [team_a.pk]},
    )
    assert response.status_code == 200
    assert "Another customer already has this name" in response.content.decode()
    assert Tenant.objects.filter(display_name__iexact="customer dup").count() == 1


def test_a_customer_keeps_its_own_name_when_edited(alice_client, tenant_a, team_a):
    response = alice_client.post(
        reverse("tenants:edit", kwargs={"tenant_pk": tenant_a.pk}),
        {
            "display_name": tenant_a.display_name.lower(),
            "cloud": "commercial",
            "groups": [team_a.pk],
        },
    )
    assert response.status_code == 302


def test_buttons_that_cannot_be_used_are_disabled_and_say_why(alice_client, team_a):
    tenant = TenantFactory(display_name="New customer", groups=[team_a])
    html = detail(alice_client, tenant)
    assert html.count('disabled aria-describedby="sync-blocked"') == 2
    assert "Not until the customer&#x27;s consent is confirmed." in html
    assert 'disabled aria-describedby="check-blocked"' in html
    tenant.consent_state, tenant.is_active = Tenant.ConsentState.CONSENTED, False
    tenant.save()
    assert "The customer is disabled: enable it to sync." in detail(alice_client, tenant)


def test_pending_permissions_wait_for_microsoft_rather_than_missing(alice_client, team_a):
    tenant = TenantFactory(
        display_name="Pending customer",
        consent_state=Tenant.ConsentState.PENDING,
        entra_tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        groups=[team_a],
    )
    html = detail(alice_client, tenant)
    assert "waiting for Microsoft" in html
    assert ">missing<" not in html


def test_open_links_from_before_the_consent_are_marked_superseded(alice_client, tenant_a, alice):
    old = ConsentLink.objects.create(tenant=tenant_a, created_by=alice)
    ConsentLink.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    used = ConsentLink.objects.create(
        tenant=tenant_a, created_by=alice, completed_at=timezone.now(), outcome="granted"
    )
    later = ConsentLink.objects.create(tenant=tenant_a, created_by=alice)
    ConsentLink.objects.filter(pk=later.pk).update(created_at=timezone.now() + timedelta(minutes=1))
    links = {
        link.pk: link
        for link in alice_client.get(
            reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk})
        ).context["links"]
    }
    assert links[old.pk].superseded
    assert not links[used.pk].superseded
    assert not links[later.pk].superseded
    assert "Superseded" in detail(alice_client, tenant_a)


def test_sync_now_and_check_access_are_in_the_activity_log_in_words(
    alice_client, alice, tenant_a, enqueued, monkeypatch
):
    from partner_portal.consent import tasks as consent_tasks

    monkeypatch.setattr(consent_tasks.verify_tenant_access, "delay_on_commit", lambda **kw: None)
    alice.first_name, alice.last_name = "Alice", "Archer"
    alice.save()
    alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    alice_client.post(
        reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}), {"full": "1"}
    )
    alice_client.post(reverse("consent:check_access", kwargs={"tenant_pk": tenant_a.pk}))
    html = detail(alice_client, tenant_a)
    assert "Alice Archer pressed Sync now." in html
    assert "Alice Archer pressed Full re-sync." in html
    assert "Alice Archer pressed Check access." in html
    assert AuditEvent.objects.filter(tenant=tenant_a, actor=alice).count() == 3


def test_every_recorded_event_reads_as_words(tenant_a, alice):
    from partner_portal.audit.models import SENTENCES

    for action in SENTENCES:
        event = AuditEvent(action=action, actor=alice, tenant=tenant_a, data={"outcome": "x"})
        assert action not in event.sentence and event.sentence.endswith(".")
    # A code nobody described yet still says something, and hostile data can't break it.
    assert AuditEvent(action="new.thing", data=["\x00"]).sentence == "The portal: new.thing"


def test_the_sync_box_polls_from_sync_now_until_the_run_is_over(alice_client, tenant_a, enqueued):
    assert "hx-trigger" not in status(alice_client, tenant_a)  # idle: no polling
    alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    waiting = status(alice_client, tenant_a)
    assert 'hx-trigger="every 3s"' in waiting and "waiting for a worker" in waiting
    # A live run holds its tenant's lease (one without is a dead worker's, closed as such).
    assert tenant_a.take_sync_lease(now=timezone.now())
    run = SyncRun.objects.create(
        tenant=tenant_a, started_at=timezone.now(), outcome=SyncOutcome.RUNNING
    )
    running = status(alice_client, tenant_a)
    assert 'hx-trigger="every 3s"' in running and "waiting for a worker" not in running
    run.outcome, run.finished_at = SyncOutcome.SUCCESS, timezone.now()
    run.save()
    assert "hx-trigger" not in status(alice_client, tenant_a)


def test_a_request_no_worker_takes_stops_the_polling_after_a_while(
    alice_client, tenant_a, enqueued
):
    alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    AuditEvent.objects.update(created_at=timezone.now() - timedelta(minutes=3))
    assert "hx-trigger" not in status(alice_client, tenant_a)
