"""The tenant page's "Sync now" button and live sync status."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from partner_portal.incidents.models import SyncOutcome, SyncRun
from partner_portal.incidents.templatetags.sync_tags import next_scheduled_run


def test_sync_now_enqueues_the_task_and_returns_to_the_tenant_page(
    alice_client, tenant_a, enqueued
):
    response = alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    assert response.status_code == 302
    assert response.url == reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk})
    assert enqueued == [{"tenant_pk": tenant_a.pk, "full": False, "requested": True}]
    assert "requested" in str(next(iter(get_messages(response.wsgi_request))))


def test_sync_now_on_a_syncing_tenant_says_so_and_asks_for_one_follow_up(
    alice_client, tenant_a, enqueued
):
    tenant_a.take_sync_lease(now=timezone.now())
    url = reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk})
    response = alice_client.post(url)
    assert "is running now" in str(next(iter(get_messages(response.wsgi_request))))
    alice_client.post(url)  # pressed twice: still one follow-up
    assert enqueued == []  # nothing that would only find the tenant busy and skip
    tenant_a.refresh_from_db()
    assert tenant_a.sync_follow_up == "sync"
    assert tenant_a.take_follow_up_sync() == "sync"
    assert tenant_a.take_follow_up_sync() == ""
    assert not SyncRun.objects.filter(tenant=tenant_a).exists()


def test_sync_now_as_the_run_ends_is_either_its_follow_up_or_a_run_of_its_own(
    alice_client, tenant_a, enqueued
):
    # The run's end reads what was asked while it held the tenant, in the statement that
    # lets go of it; a request after that finds no run to follow and starts one.
    token = tenant_a.take_sync_lease(now=timezone.now())
    pressed = type(tenant_a).objects.get(pk=tenant_a.pk)
    assert pressed.request_follow_up_sync(full=False, now=timezone.now())
    tenant_a.end_sync_run(token=token, outcome=SyncOutcome.SUCCESS)
    assert tenant_a.take_follow_up_sync() == "sync"
    assert tenant_a.take_follow_up_sync() == ""
    token = tenant_a.take_sync_lease(now=timezone.now())
    tenant_a.end_sync_run(token=token, outcome=SyncOutcome.SUCCESS)
    assert not pressed.request_follow_up_sync(full=True, now=timezone.now())
    assert tenant_a.take_follow_up_sync() == ""  # nothing left for a run that has ended
    alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    assert enqueued == [{"tenant_pk": tenant_a.pk, "full": False, "requested": True}]
    tenant_a.refresh_from_db()
    assert tenant_a.sync_follow_up == ""


def test_full_resync_is_a_checkbox_away(alice_client, tenant_a, enqueued):
    alice_client.post(
        reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}), {"full": "1"}
    )
    assert enqueued == [{"tenant_pk": tenant_a.pk, "full": True, "requested": True}]


def test_sync_now_is_404_for_staff_who_may_not_see_the_tenant(client, bob, tenant_a, enqueued):
    client.force_login(bob)
    response = client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    assert response.status_code == 404
    assert enqueued == []


def test_sync_now_needs_post(alice_client, tenant_a, enqueued):
    response = alice_client.get(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    assert response.status_code == 405
    assert enqueued == []


def test_a_tenant_without_consent_is_not_enqueued(alice_client, tenant_a, enqueued):
    tenant_a.consent_state = tenant_a.ConsentState.REVOKED
    tenant_a.save()
    response = alice_client.post(reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}))
    assert response.status_code == 302
    assert enqueued == []
    assert "cannot be synced" in str(next(iter(get_messages(response.wsgi_request))))


def status(client, tenant):
    return client.get(reverse("incidents:sync_status", kwargs={"tenant_pk": tenant.pk}))


def test_the_status_polls_only_while_a_run_is_going_on(alice_client, tenant_a):
    tenant_a.take_sync_lease(now=timezone.now())  # a live run holds its tenant
    run = SyncRun.objects.create(tenant=tenant_a, started_at=timezone.now(), pages=4)
    run.created_count = 350
    run.save()
    body = status(alice_client, tenant_a).content.decode()
    assert 'hx-trigger="every 3s"' in body
    assert "page 4" in body and "350 created" in body
    run.outcome = SyncOutcome.SUCCESS
    run.finished_at = run.started_at + timedelta(seconds=12)
    run.save()
    body = status(alice_client, tenant_a).content.decode()
    assert "hx-trigger" not in body
    assert "12.0 s" in body and "Success" in body


def test_the_status_explains_the_last_error_with_its_fix(alice_client, tenant_a):
    SyncRun.objects.create(
        tenant=tenant_a,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        outcome=SyncOutcome.FAILED,
        error_class="ConsentRequired",
    )
    tenant_a.last_sync_error_class = "ConsentRequired"
    tenant_a.last_sync_error_message = "AADSTS7000229: missing service principal"
    tenant_a.save()
    body = status(alice_client, tenant_a).content.decode()
    assert "Admin consent is missing" in body
    assert "Create a new consent link" in body
    assert "AADSTS7000229" in body


def test_the_status_is_404_for_strangers(client, charlie, tenant_a):
    client.force_login(charlie)
    assert status(client, tenant_a).status_code == 404


def test_the_tenant_page_shows_the_sync_button(alice_client, tenant_a):
    body = alice_client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk})).content
    assert b"Sync now" in body
    assert reverse("incidents:sync_now", kwargs={"tenant_pk": tenant_a.pk}).encode() in body


def test_next_scheduled_run_comes_from_the_beat_table(db):
    assert next_scheduled_run() is None
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name="sync-all-tenants",
        task="partner_portal.incidents.tasks.sync_all_tenants",
        interval=every,
        last_run_at=timezone.now() - timedelta(minutes=2),
    )
    upcoming = next_scheduled_run()
    assert timedelta(minutes=2) < upcoming - timezone.now() <= timedelta(minutes=3, seconds=5)


def test_a_run_whose_worker_died_shows_as_lost_once_its_lease_expired(alice_client, tenant_a):
    tenant_a.take_sync_lease(now=timezone.now())
    run = SyncRun.objects.create(tenant=tenant_a, started_at=timezone.now(), pages=5)
    url = reverse("incidents:sync_status", kwargs={"tenant_pk": tenant_a.pk})
    assert "page 5" in alice_client.get(url).content.decode()  # alive while the lease holds
    type(tenant_a).objects.filter(pk=tenant_a.pk).update(sync_lease_until=timezone.now())
    page = alice_client.get(url).content.decode()
    assert "page 5" not in page
    run.refresh_from_db()
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "WorkerLost")
