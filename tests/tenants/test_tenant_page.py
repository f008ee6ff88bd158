"""The tenant page: its health (consent, permissions and the fix, in plain words), its syncs
and the sync box that refreshes itself, its buttons (disable, check access: each says why
when it cannot be used), its consent links, its incidents and its activity log in words."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.consent.models import ConsentLink
from partner_portal.consent.tasks import verify_tenant_access
from partner_portal.incidents.models import SyncOutcome, SyncRun
from partner_portal.tenants.models import Tenant
from tests.factories import TenantFactory


def detail(client, tenant) -> str:
    return client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant.pk})).content.decode()


def status(client, tenant) -> str:
    url = reverse("incidents:sync_status", kwargs={"tenant_pk": tenant.pk})
    return client.get(url).content.decode()


def test_the_health_page_shows_consent_permissions_and_the_fix(alice_client, tenant_a):
    tenant_a.record_access_check(
        state=Tenant.ConsentState.FAILED,
        roles=[],
        error_class="CredentialInvalid",
        error_message="AADSTS7000215: Invalid client secret provided.",
    )
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "The portal&#x27;s app credentials were rejected" in page
    assert "update MICROSOFT_CLIENT_SECRET" in page
    assert "AADSTS7000215: Invalid client secret provided." in page
    assert "Incident.Read.All" in page and "missing" in page
    assert "Sync status and" not in page  # the include is a template comment
    assert "Check access" in page


def test_the_health_page_shows_the_last_sync_and_recent_runs(alice_client, tenant_a):
    now = timezone.now()
    SyncRun.objects.create(
        tenant=tenant_a,
        started_at=now - timedelta(minutes=10),
        finished_at=now - timedelta(minutes=10) + timedelta(seconds=4.2),
        outcome="success",
        created_count=12,
        updated_count=3,
    )
    SyncRun.objects.create(
        tenant=tenant_a,
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=5) + timedelta(seconds=1),
        outcome="failed",
        error_class="Forbidden",
    )
    Tenant.objects.filter(pk=tenant_a.pk).update(
        last_sync_at=now - timedelta(minutes=5),
        last_sync_outcome="failed",
        last_sync_error_class="Forbidden",
        last_sync_error_message="403 from the API",
    )
    response = alice_client.get(f"/tenants/{tenant_a.pk}/")
    page = response.content.decode()
    assert [r.outcome for r in response.context["sync_runs"]] == ["failed", "success"]
    assert "12" in page and "4.2 s" in page
    assert "Access denied by Microsoft" in page and "403 from the API" in page
    assert "Needs attention" in page


def test_the_next_sync_says_why_not_when_the_tenant_cannot_sync(alice_client, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(sync_enabled=False)
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "Sync is turned off for this tenant." in page


def test_disable_and_enable_are_posts_and_audited(alice_client, tenant_a):
    assert alice_client.get(f"/tenants/{tenant_a.pk}/toggle/").status_code == 405
    alice_client.post(f"/tenants/{tenant_a.pk}/toggle/")
    tenant_a.refresh_from_db()
    assert not tenant_a.is_active and not tenant_a.is_syncable
    alice_client.post(f"/tenants/{tenant_a.pk}/toggle/")
    tenant_a.refresh_from_db()
    assert tenant_a.is_active
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["tenant.disabled", "tenant.enabled"]


def test_check_access_enqueues_the_verification_after_commit(
    alice_client, tenant_a, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(verify_tenant_access, "delay", lambda **kw: sent.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/consent/tenants/{tenant_a.pk}/check-access/")
    assert response.status_code == 302
    assert sent == [{"tenant_pk": tenant_a.pk}]


def test_check_access_without_a_tenant_id_asks_for_consent_first(alice_client, team_a):
    tenant = TenantFactory(groups=[team_a])
    response = alice_client.post(f"/consent/tenants/{tenant.pk}/check-access/", follow=True)
    assert b"send a consent link first" in response.content


def test_a_pending_tenant_says_the_portal_is_still_confirming(alice_client, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(
        consent_state=Tenant.ConsentState.PENDING,
        consent_error_class="ConsentRequired",
        consent_error_message="AADSTS7000229: missing service principal",
    )
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "keeps trying for about 10 minutes" in page
    assert "AADSTS7000229: missing service principal" in page
    assert "Create a new consent link and send it" not in page


def test_the_next_sync_of_a_one_minute_schedule_is_in_the_singular(
    alice_client, tenant_a, settings
):
    settings.SYNC_INTERVAL_MINUTES = 1  # as in the demo
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert "within 1 minute of the scheduler starting" in page
    assert "1 minutes" not in page


def test_the_tenant_page_counts_its_incidents_and_links_to_them(alice_client, tenant_a, tenant_b):
    from tests.factories import IncidentFactory

    IncidentFactory.create_batch(3, tenant=tenant_a)
    IncidentFactory(tenant=tenant_b)
    page = alice_client.get(f"/tenants/{tenant_a.pk}/").content.decode()
    assert f'href="/?tenant={tenant_a.pk}">3 synced</a>' in page


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
