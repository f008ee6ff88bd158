"""The lease follows the run: a fencing token per run, writes refused once it is lost, no
older copy over a newer one, retries that hold the tenant only so long, and a history that
a late or duplicated task never rewrites."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from partner_portal.incidents import lease_keeper, sync
from partner_portal.incidents.models import Incident, SyncOutcome, SyncRun
from partner_portal.microsoft import errors
from partner_portal.tenants.models import Tenant, lease_seconds
from tests.incidents.helpers import assert_db_matches, make_tenant, tid
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def take_over(tenant) -> None:
    """Another run took the tenant (as after this run's lease expired)."""
    Tenant.objects.filter(pk=tenant.pk).update(
        sync_lease_token="another-run", sync_lease_until=timezone.now() + timedelta(minutes=1)
    )


def test_the_lease_is_short_and_renewed_by_every_page(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    assert lease_seconds() == 90
    seen = []

    def note(run):
        fresh = Tenant.objects.get(pk=tenant.pk)
        seen.append((fresh.sync_lease_token, fresh.sync_lease_until))

    assert sync.sync_tenant(tenant=tenant, progress=note).outcome == SyncOutcome.SUCCESS
    tokens = {token for token, _ in seen}
    assert len(tokens) == 1 and "" not in tokens  # one fencing value for the whole run
    untils = [until for _, until in seen]
    assert untils == sorted(untils) and untils[0] < untils[-1]  # renewed by every page
    assert untils[-1] <= timezone.now() + timedelta(seconds=90)
    tenant.refresh_from_db()
    assert (tenant.sync_lease_token, tenant.sync_lease_until) == ("", None)


def test_a_run_that_lost_its_lease_writes_nothing_more(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)

    def lose_it(run):
        if run.pages == 1:
            take_over(tenant)

    run = sync.sync_tenant(tenant=tenant, progress=lose_it)
    assert (run.outcome, run.error_class, run.pages) == (SyncOutcome.FAILED, "LeaseLost", 1)
    assert Incident.objects.filter(tenant=tenant).count() == 100  # page 2 was refused
    tenant.refresh_from_db()
    assert tenant.incidents_watermark is None
    assert tenant.sync_lease_token == "another-run"  # theirs, untouched by our release


def test_an_older_copy_never_replaces_a_newer_one(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=30)
    sync.sync_tenant(tenant=tenant)
    # A faster run already stored a newer copy of one incident than the one we will read.
    newer = Incident.objects.filter(tenant=tenant).order_by("microsoft_id").first()
    later = newer.last_update_time + timedelta(minutes=5)
    Incident.objects.filter(pk=newer.pk).update(last_update_time=later, name="newer copy")
    run = sync.sync_tenant(tenant=tenant, full=True)
    assert run.outcome == SyncOutcome.SUCCESS
    newer.refresh_from_db()
    assert (newer.name, newer.last_update_time) == ("newer copy", later)
    assert run.updated_count == 0  # the other 29 read again as they are stored


def test_a_retry_holds_the_tenant_for_its_countdown_plus_one_lease_only(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=429, count=1, after=1
    )
    before = timezone.now()
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    countdown = info.value.countdown
    tenant.refresh_from_db()
    assert tenant.sync_lease_until > before + timedelta(seconds=countdown)
    assert tenant.sync_lease_until <= timezone.now() + timedelta(seconds=countdown + 90)


def test_a_lost_retry_is_taken_over_and_its_late_message_changes_nothing(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500, count=1, after=1
    )
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    waiting = SyncRun.objects.get(tenant=tenant)
    assert waiting.outcome == SyncOutcome.RETRYING
    # The retry message never comes (Redis lost it): once countdown + one lease is over...
    Tenant.objects.filter(pk=tenant.pk).update(sync_lease_until=timezone.now())
    assert tenant.pk in sync.sync_due_tenants()  # ...the scheduler takes the tenant over
    waiting.refresh_from_db()
    assert (waiting.outcome, waiting.error_class) == (SyncOutcome.FAILED, "RetryLost")
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert_db_matches(devcloud, tenant)
    # The message shows up after all: it neither reopens its run nor calls Microsoft.
    devcloud.clear_requests()
    late = sync.sync_tenant(tenant=tenant, resume=info.value.cursor)
    assert late.pk == waiting.pk
    assert (late.outcome, late.error_class) == (SyncOutcome.FAILED, "RetryLost")
    assert SyncRun.objects.filter(tenant=tenant).count() == 2
    assert devcloud.requests_log(tid(tenant))["by_endpoint"].get("list_incidents", 0) == 0
    tenant.refresh_from_db()
    assert tenant.last_sync_outcome == SyncOutcome.SUCCESS


def test_a_duplicated_retry_runs_once_and_never_rewrites_the_finished_run(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500, count=1, after=1
    )
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    cursor = info.value.cursor
    copies = []

    def second_copy(run):  # the broker delivers the same retry again while it runs
        if not copies:
            copies.append(sync.sync_tenant(tenant=tenant, resume=cursor))

    run = sync.sync_tenant(tenant=tenant, resume=cursor, progress=second_copy)
    assert run.outcome == SyncOutcome.SUCCESS
    assert copies[0].pk == run.pk
    again = sync.sync_tenant(tenant=tenant, resume=cursor)  # and once more, late
    assert again.pk == run.pk
    run.refresh_from_db()
    assert (run.outcome, run.pages, run.created_count) == (SyncOutcome.SUCCESS, 3, 250)
    assert SyncRun.objects.filter(tenant=tenant).count() == 1
    assert_db_matches(devcloud, tenant)


def test_a_run_whose_worker_died_shows_as_such_once_its_lease_expired(db):
    from tests.factories import ConsentedTenantFactory

    tenant = ConsentedTenantFactory()
    token = tenant.take_sync_lease(now=timezone.now())
    run = SyncRun.objects.create(tenant=tenant, started_at=timezone.now())
    assert sync.close_dead_runs() == 0  # alive while its lease holds
    assert token
    Tenant.objects.filter(pk=tenant.pk).update(sync_lease_until=timezone.now())
    assert sync.close_dead_runs() == 1
    run.refresh_from_db()
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "WorkerLost")


# Row locks: on SQLite select_for_update(skip_locked=True) is a no-op, so the scheduler cannot
# see that a page holds the tenant (the README's `pytest` runs on SQLite; CI on PostgreSQL).
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row locks")
def test_a_page_outlasting_its_lease_is_neither_declared_dead_nor_left_lapsed(transactional_db):
    # Under load a page's transaction can take longer than a lease (seconds in the chaos
    # suite): it holds the tenant's row, so the committed lease lapses meanwhile.
    import threading

    from django.db import connections, transaction

    from tests.factories import ConsentedTenantFactory

    tenant = ConsentedTenantFactory()
    token = tenant.take_sync_lease(now=timezone.now())
    run = SyncRun.objects.create(tenant=tenant, started_at=timezone.now())
    Tenant.objects.filter(pk=tenant.pk).update(sync_lease_until=timezone.now())  # lapsed
    in_page, done = threading.Event(), threading.Event()

    def page() -> None:
        with transaction.atomic():
            assert Tenant.objects.get(pk=tenant.pk).renew_sync_lease(token=token)
            Tenant.objects.filter(pk=tenant.pk).update(sync_lease_until=timezone.now())
            in_page.set()
            done.wait(10)
        connections.close_all()

    writer = threading.Thread(target=page)
    writer.start()
    try:
        assert in_page.wait(10)
        assert sync.close_dead_runs() == 0  # its row is locked: a page is being written
        # The lease keeper does not wait for the page (it would hold up every other run's
        # renewal), and keeps the lease: the page renews it as it commits.
        renewed: list[bool] = []

        def renew() -> None:
            renewed.append(lease_keeper._renew(tenant.pk, token))
            connections.close_all()

        keeper = threading.Thread(target=renew)
        keeper.start()
        keeper.join(5)
        assert renewed == [True]
    finally:
        done.set()
        writer.join()
    run.refresh_from_db()
    assert run.outcome == SyncOutcome.RUNNING
    assert sync.close_dead_runs() == 1  # nothing holds it any more: dead


def test_backoff_counts_failures_per_page(db, devcloud, devcloud_settings, settings):
    settings.SYNC_MAX_RETRIES = 1
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    # One 500 on page 2, one on page 3: two failures in the run, but one per page.
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500, count=1, after=1
    )
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500, count=1, after=1
    )
    with pytest.raises(errors.RetryLater) as again:
        sync.sync_tenant(tenant=tenant, resume=info.value.cursor)
    assert again.value.cursor["failures"] == 1
    assert again.value.countdown < settings.SYNC_RETRY_BACKOFF_SECONDS * 2
    run = sync.sync_tenant(tenant=tenant, resume=again.value.cursor)
    assert run.outcome == SyncOutcome.SUCCESS
    assert_db_matches(devcloud, tenant)


def test_a_successful_sync_clears_an_old_credential_error(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    tenant.record_consent_error(
        error_class="CredentialInvalid", error_message="The secret was rejected."
    )
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS
    tenant.refresh_from_db()
    assert (tenant.consent_error_class, tenant.consent_error_message) == ("", "")
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED


def test_a_reconciliation_pass_repairs_and_counts_what_the_watermark_missed(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    sync.sync_tenant(tenant=tenant)
    # What a clock step back leaves behind: rows never stored, rows left at an older copy,
    # all older than the incremental window, so the next incremental run cannot see them.
    rows = Incident.objects.filter(tenant=tenant).order_by("last_update_time")
    gone = list(rows.values_list("pk", flat=True)[:7])
    Incident.objects.filter(pk__in=gone).delete()
    stale = list(rows.values_list("pk", flat=True)[:5])
    for incident in Incident.objects.filter(pk__in=stale):
        Incident.objects.filter(pk=incident.pk).update(
            last_update_time=incident.last_update_time - timedelta(hours=1)
        )
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS
    assert Incident.objects.filter(tenant=tenant).count() == 243  # still missing
    run = sync.sync_tenant(tenant=tenant, reconcile=True)
    assert (run.outcome, run.reconcile, run.full) == (SyncOutcome.SUCCESS, True, True)
    assert (run.missing_repaired, run.stale_repaired) == (7, 5)
    assert_db_matches(devcloud, tenant)


def test_reconciliation_is_due_once_a_day_one_tenant_per_tick(db, settings):
    from tests.factories import ConsentedTenantFactory

    now = timezone.now()
    a, b, c = (ConsentedTenantFactory(incidents_watermark=now) for _ in range(3))
    for tenant, hours_ago in ((a, 30), (b, 50), (c, 2)):
        SyncRun.objects.create(
            tenant=tenant,
            started_at=now - timedelta(hours=hours_ago),
            outcome=SyncOutcome.SUCCESS,
            reconcile=True,
            full=True,
        )
    assert sync.reconcile_due([a.pk, b.pk, c.pk]) == [b.pk]  # the most overdue, alone
    assert sync.reconcile_due([a.pk, c.pk]) == [a.pk]
    assert sync.reconcile_due([c.pk]) == []
    settings.SYNC_RECONCILE_HOURS = 0
    assert sync.reconcile_due([a.pk, b.pk]) == []


def test_a_run_waiting_on_a_slow_answer_keeps_its_lease(
    transactional_db, devcloud, devcloud_settings, settings
):
    settings.SYNC_LEASE_SECONDS = 2
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=5000)
    runs = []

    def run() -> None:
        try:
            runs.append(sync.sync_tenant(tenant=Tenant.objects.get(pk=tenant.pk)))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    first = wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).sync_lease_until, what="the lease to be taken"
    )

    def renewed_while_waiting() -> bool:
        until = Tenant.objects.get(pk=tenant.pk).sync_lease_until
        # Read after the lease: a page's renewal commits with its incidents.
        return until is not None and until > first and not Incident.objects.exists()

    wait_until(renewed_while_waiting, timeout=4, interval=0.05, what="a renewal before the answer")
    thread.join(30)
    assert runs[0].outcome == SyncOutcome.SUCCESS


def test_sync_now_on_a_busy_tenant_follows_its_run_or_runs_if_that_one_just_ended(
    db, devcloud, devcloud_settings, monkeypatch
):
    tenant = make_tenant(devcloud, devcloud_settings, count=3)
    holder = Tenant.objects.get(pk=tenant.pk)  # another run's copy
    token = holder.take_sync_lease(now=timezone.now())
    run = sync.sync_tenant(tenant=tenant, follow_up_if_busy=True)
    assert (run.pk, run.outcome) == (None, SyncOutcome.SKIPPED)  # not recorded: it follows
    holder.end_sync_run(token=token, outcome=SyncOutcome.SUCCESS)
    assert holder.take_follow_up_sync() == "sync"
    # The holder lets go between the request's failed take and its request for a follow-up:
    # nobody is left to run it, so it runs itself.
    token = holder.take_sync_lease(now=timezone.now())
    take = Tenant.take_sync_lease

    def holder_ends_meanwhile(self, **kwargs):
        taken = take(self, **kwargs)
        if taken is None:
            holder.end_sync_run(token=token, outcome=SyncOutcome.SUCCESS)
        return taken

    monkeypatch.setattr(Tenant, "take_sync_lease", holder_ends_meanwhile)
    run = sync.sync_tenant(tenant=tenant, follow_up_if_busy=True)
    assert run.pk is not None and run.outcome == SyncOutcome.SUCCESS
    assert Tenant.objects.get(pk=tenant.pk).sync_follow_up == ""
    assert_db_matches(devcloud, tenant)


def test_a_run_begun_in_one_statement_is_recorded_as_the_steps_record_it(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    stale = Tenant.objects.get(pk=tenant.pk)  # from before the first run's watermark
    sync.sync_tenant(tenant=tenant)
    now = timezone.now()
    began = sync._begin(stale, now=now, full=False, reconcile=True, task_id="task-1")
    if connection.vendor != "postgresql":
        assert began is None  # step by step (`_open`)
        return
    assert began is not None
    token, run = began
    stored = SyncRun.objects.get(pk=run.pk)
    for field in SyncRun._meta.concrete_fields:
        assert getattr(run, field.attname) == getattr(stored, field.attname), field.name
    tenant.refresh_from_db()
    assert stale.incidents_watermark == tenant.incidents_watermark is not None
    assert (run.watermark_before, run.full, run.reconcile) == (
        tenant.incidents_watermark,
        True,
        True,
    )
    assert (run.outcome, run.started_at, run.task_id) == (SyncOutcome.RUNNING, now, "task-1")
    assert stale.sync_lease_token == tenant.sync_lease_token == token
    assert stale.lease_read and not stale.took_over_lease
    # Held now: a second start finds no free lease, and records nothing.
    assert sync._begin(tenant, now=timezone.now(), full=False, reconcile=False, task_id="") is None
    assert SyncRun.objects.filter(tenant=tenant).count() == 2


def test_a_busy_tenants_run_tries_the_free_lease_once_then_the_takeover_and_is_skipped(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings)
    take_over(tenant)
    table = Tenant._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        run = sync.sync_tenant(tenant=Tenant.objects.get(pk=tenant.pk))
    assert run.outcome == SyncOutcome.SKIPPED
    # The free lease's try (on PostgreSQL inside the one-statement start), the takeover's.
    lease_tries = [q["sql"] for q in queries if f'UPDATE "{table}"' in q["sql"]]
    assert len(lease_tries) == 2, lease_tries
    assert Tenant.objects.get(pk=tenant.pk).sync_lease_token == "another-run"
