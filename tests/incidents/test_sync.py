"""The sync as plain functions, against devcloud over TLS with real MSAL tokens."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from partner_portal.incidents import sync
from partner_portal.incidents.models import Incident, SyncOutcome
from partner_portal.microsoft import errors
from partner_portal.microsoft.defender import parse_time
from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, IncidentFactory, TenantFactory
from tests.incidents.helpers import assert_db_matches, make_tenant, tid

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _local_cache(settings):
    # The call budget lives in the cache: a fresh local one per test.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_sync_then_evolve_then_sync_equals_ground_truth(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert (run.pages, run.created_count, run.updated_count) == (3, 250, 0)
    assert_db_matches(devcloud, tenant)
    tenant.refresh_from_db()
    newest = max(parse_time(i["lastUpdateTime"]) for i in devcloud.incidents(tid(tenant)))
    assert tenant.incidents_watermark == newest
    assert tenant.last_sync_outcome == SyncOutcome.SUCCESS
    assert tenant.sync_lease_until is None

    changed = devcloud.evolve(tid(tenant), changed=20, new=5)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert run.created_count == 5
    assert run.updated_count == len(changed["changed"])  # not those read again unchanged
    assert run.pages == 1  # only the window since the watermark (minus the overlap)
    assert_db_matches(devcloud, tenant)


def test_an_incremental_one_page_run_is_a_fixed_handful_of_statements(
    db, devcloud, devcloud_settings, django_assert_max_num_queries
):
    # A schedule cycle runs this for every tenant: its statements are most of its cost.
    tenant = make_tenant(devcloud, devcloud_settings, count=30)
    sync.sync_tenant(tenant=tenant)
    sync.sync_tenant(tenant=tenant)  # an incremental run before (the page room's history)
    devcloud.evolve(tid(tenant), changed=10, new=2)
    # 12 with the savepoints of the test's own transaction (BEGIN/COMMIT in production),
    # one of them the new incidents' search words; 25 before the run read its history with
    # the tenant and the page's fence its snapshot, 20 before the page went without a
    # savepoint of its own, 18 before the lease's UPDATE read the tenant, its history and
    # how much of its overlap the page has room for, and inserted the SyncRun; 15 on SQLite
    # (the start, the counts and the run's end step by step).
    with django_assert_max_num_queries(15 if connection.vendor == "sqlite" else 12) as captured:
        run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.pages, run.created_count) == (SyncOutcome.SUCCESS, 1, 2)
    statements = [q["sql"] for q in captured.captured_queries]
    assert not [s for s in statements if "incidents_syncproblem" in s and "DELETE" in s]
    # The alerts of changed incidents are compared, not deleted and written again.
    assert not [s for s in statements if s.startswith("DELETE") and "incidents_alert" in s]
    # Both of the summary's counts moved: one statement on PostgreSQL.
    counting = [s for s in statements if "incidents_incidentdaycount" in s]
    assert ("incidents_incidentcount" in counting[-1]) == (connection.vendor == "postgresql")
    assert_db_matches(devcloud, tenant)


def test_a_tenant_without_incidents_syncs_to_nothing(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings)
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert (run.pages, run.api_calls, run.created_count) == (1, 1, 0)
    tenant.refresh_from_db()
    assert tenant.incidents_watermark is None
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_search_text_and_severity_rank_are_derived_at_upsert(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=30)
    sync.sync_tenant(tenant=tenant)
    incidents = Incident.objects.filter(tenant=tenant).select_related("search")
    for incident in incidents.prefetch_related("alerts"):
        words = incident.search.text
        assert incident.search.tenant_id == tenant.pk
        assert words == words.lower()
        assert incident.name.lower() in words
        for alert in incident.alerts.all():
            assert alert.title.lower() in words
            for device in alert.devices:
                if device.get("deviceDnsName"):
                    assert device["deviceDnsName"].lower() in words
        rank = {"informational": 1, "low": 2, "medium": 3, "high": 4}.get(
            incident.severity.lower(), 0
        )
        assert incident.severity_rank == rank


def sync_like_the_task(tenant, *, attempts: int = 20, **kwargs):
    """Call sync_tenant as the task does: on a transient error, again from its cursor."""
    resume = None
    for _ in range(attempts):
        try:
            return sync.sync_tenant(tenant=tenant, resume=resume, **kwargs)
        except errors.RetryLater as later:
            assert later.cursor["run_id"]
            resume = later.cursor
    raise AssertionError("did not finish")


def test_1000_plus_incidents_across_11_pages(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=1050)
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.pages, run.api_calls, run.created_count) == ("success", 11, 11, 1050)
    assert devcloud.requests_log(tid(tenant))["by_endpoint"]["list_incidents"] == 11
    assert_db_matches(devcloud, tenant)


def test_an_incident_changed_between_two_pages_is_taken_by_the_next_run(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=350)
    # Between the 1st and the 2nd page request devcloud changes 5 incidents: they jump to
    # the front of the newest-first list, behind our cursor.
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="evolve", after=1, count=1, changed=5
    )
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    tenant.refresh_from_db()
    truth = {i["incidentId"]: i for i in devcloud.incidents(tid(tenant))}
    stale = [
        n
        for n, want in truth.items()
        if not Incident.objects.filter(
            tenant=tenant, microsoft_id=n, last_update_time=parse_time(want["lastUpdateTime"])
        ).exists()
    ]
    assert stale, "the fault should have made this run miss changes"
    for n in stale:
        # The watermark never passes a change this run did not receive...
        assert parse_time(truth[n]["lastUpdateTime"]) > tenant.incidents_watermark
    # ...so the next run takes them all.
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert_db_matches(devcloud, tenant)


def test_a_clock_step_back_beyond_the_overlap_is_read_from_further_back(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=150)
    devcloud.evolve(tid(tenant), changed=5, new=1)  # changes of the last moments
    sync.sync_tenant(tenant=tenant)
    # Microsoft's clock steps back 10 minutes, beyond the 5-minute overlap: the changes
    # after it are stamped before the watermark's window.
    devcloud.set_limits(clock_offset=-600)
    devcloud.evolve(tid(tenant), changed=10, new=3)
    run = sync.sync_tenant(tenant=tenant)
    # Its first answer's Date says Microsoft's clock is behind the window: the listing starts
    # again from where the changes since the last run can be (one call more).
    assert (run.outcome, run.created_count, run.api_calls) == (SyncOutcome.SUCCESS, 3, 2)
    assert_db_matches(devcloud, tenant)
    devcloud.set_limits(clock_offset=0)  # stepped forward again: nothing to re-read
    devcloud.evolve(tid(tenant), changed=2, new=1)
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.created_count, run.api_calls) == (SyncOutcome.SUCCESS, 1, 1)


def stale_or_missing(devcloud, tenant) -> set[int]:
    """Devcloud's incidents the database lacks or holds at an older version."""
    truth = {
        i["incidentId"]: parse_time(i["lastUpdateTime"]) for i in devcloud.incidents(tid(tenant))
    }
    stored = dict(
        Incident.objects.filter(tenant=tenant).values_list("microsoft_id", "last_update_time")
    )
    return {n for n, when in truth.items() if stored.get(n) != when}


def test_changes_indexed_late_are_taken_by_the_next_run_in_its_one_call(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=120)
    sync.sync_tenant(tenant=tenant)
    devcloud.evolve(tid(tenant), changed=5, new=1, seed=1)
    sync.sync_tenant(tenant=tenant)
    # Microsoft lists these only now, stamped a minute ago: behind the watermark.
    devcloud.evolve(tid(tenant), changed=3, new=1, seed=2, late_seconds=60)
    tenant.refresh_from_db()
    truth = {i["incidentId"]: i for i in devcloud.incidents(tid(tenant))}
    late = {
        n
        for n in stale_or_missing(devcloud, tenant)
        if parse_time(truth[n]["lastUpdateTime"]) < tenant.incidents_watermark
    }
    assert len(late) >= 3
    # A quiet tenant's page has room for the last minutes below the watermark.
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.api_calls) == (SyncOutcome.SUCCESS, 1)
    assert_db_matches(devcloud, tenant)


def test_a_busy_tenant_reads_the_pages_its_changes_need_and_no_more(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=400)
    sync.sync_tenant(tenant=tenant)
    calls = []
    for cycle in range(4):
        devcloud.evolve(tid(tenant), changed=85, new=0, seed=cycle)
        run = sync.sync_tenant(tenant=tenant)
        assert run.outcome == SyncOutcome.SUCCESS
        calls.append(run.api_calls)
        assert_db_matches(devcloud, tenant)
    # One page of changes a run: one call each, once the first run has measured the pace
    # (re-reading the last 5 minutes each time took 2, 3, 4… calls).
    assert calls[1:] == [1, 1, 1]


def test_the_window_starts_after_the_incident_the_room_cannot_take_or_at_the_overlap(
    db, django_assert_num_queries
):
    tenant = ConsentedTenantFactory()
    watermark = timezone.now().replace(microsecond=0)
    for n in range(1, 40):  # every 5 s below the watermark, all in the 5-minute overlap
        IncidentFactory(tenant=tenant, last_update_time=watermark - timedelta(seconds=5 * n))
    IncidentFactory(tenant=tenant, last_update_time=watermark - timedelta(minutes=6))
    stale = Tenant.objects.get(pk=tenant.pk)  # a copy from before the last run's end
    stale.incidents_watermark = watermark - timedelta(minutes=2)
    Tenant.objects.filter(pk=tenant.pk).update(incidents_watermark=watermark)
    # Read with the lease: the overlap's incidents, counted from the stale copy's overlap.
    assert stale.take_sync_lease(now=timezone.now(), read=sync._history_read(stale))
    history = sync._history(*stale.lease_read)
    assert stale.incidents_watermark == watermark  # the row as the lease was taken
    assert history.in_overlap == 40  # at least the 39 in the overlap: never fewer
    # The previous run brought 70 changes: room for 10 below the watermark, just after the
    # 11th's time.
    busy = dataclasses.replace(history, changed_since_previous=70)
    after_11th = watermark - timedelta(seconds=55, microseconds=-1)
    assert sync._window_start(stale, False, busy) == after_11th
    # No changes: room for 80, more than the overlap holds, whose start it is (no lookup).
    quiet = dataclasses.replace(history, changed_since_previous=0, in_overlap=39)
    with django_assert_num_queries(0):
        assert sync._window_start(stale, False, quiet) == watermark - timedelta(minutes=5)
    # The lookup gives the same where the count is too high to tell.
    quiet = dataclasses.replace(quiet, in_overlap=80)
    assert sync._window_start(stale, False, quiet) == watermark - timedelta(minutes=5)


def leased_with_incidents_at(times, watermark):
    """A tenant holding incidents last updated at `times`, its watermark set, its lease taken
    with the `History` the lease's statement reads."""
    tenant = ConsentedTenantFactory()
    for when in times:
        IncidentFactory(tenant=tenant, last_update_time=when)
    Tenant.objects.filter(pk=tenant.pk).update(incidents_watermark=watermark)
    tenant.refresh_from_db()
    assert tenant.take_sync_lease(now=timezone.now(), read=sync._history_read(tenant))
    return tenant, sync._history(*tenant.lease_read)


def test_the_room_below_the_watermark_leaves_out_an_instant_that_would_not_fit(db):
    watermark = timezone.now().replace(microsecond=0)
    # A minute's changes stamped at one instant each (a bulk edit, or Microsoft's clock's
    # resolution): 20 at the watermark, 20 a minute before, 20 two minutes before.
    times = [watermark - timedelta(minutes=minutes) for minutes in range(3) for _ in range(20)]
    tenant, history = leased_with_incidents_at(times, watermark)
    assert history.in_overlap == 60  # those at the watermark too: the listing reads them
    # 30 changes last time: room for 50, which takes the two newest instants (40) but not
    # the third, whose 20 would overfill the page.
    busy = dataclasses.replace(history, changed_since_previous=30)
    start = sync._window_start(tenant, False, busy)
    assert start == watermark - timedelta(minutes=2) + timedelta(microseconds=1)
    assert Incident.objects.filter(tenant=tenant, last_update_time__gte=start).count() == 40


@given(
    # Seconds below the watermark, on a 10-second grid so that many share an instant; some
    # beyond the 5-minute overlap. The watermark's own instant always holds one.
    below=st.lists(
        st.integers(min_value=0, max_value=40).map(lambda k: 10 * k), min_size=20, max_size=120
    ),
    changed=st.integers(min_value=0, max_value=120),
)
@examples(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_window_re_reads_whole_instants_as_far_back_as_the_room_allows(db, below, changed):
    watermark = timezone.now().replace(microsecond=0)
    times = [watermark - timedelta(seconds=s) for s in [0, *below]]
    tenant, history = leased_with_incidents_at(times, watermark)
    history = dataclasses.replace(history, changed_since_previous=changed)
    room = sync._page_room(tenant, changed)
    earliest = watermark - timedelta(minutes=5)

    start = sync._window_start(tenant, False, history)

    def re_read(since):  # the stored incidents the listing brings again
        return sum(1 for when in times if when >= since)

    if start == watermark + timedelta(microseconds=1):  # no room: nothing below it
        assert room < re_read(watermark)
        return
    assert start >= earliest  # never beyond the overlap
    assert re_read(start) <= room  # what fits in the run's pages
    if start > earliest:  # and no less: the instant just before would not fit whole
        assert re_read(start - timedelta(microseconds=1)) > room


def test_a_tenant_changing_a_fifth_of_a_page_a_minute_reads_one_page_a_run(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=1000)
    sync.sync_tenant(tenant=tenant)
    calls = []
    for cycle in range(7):  # each cycle's changes share an instant or two, as Microsoft's can
        devcloud.evolve(tid(tenant), changed=22, new=0, seed=cycle)
        run = sync.sync_tenant(tenant=tenant)
        assert run.outcome == SyncOutcome.SUCCESS
        calls.append(run.api_calls)
        assert_db_matches(devcloud, tenant)
    # Re-reading the overlap's earlier changes filled it to two calls from the fifth run on.
    assert calls == [1] * 7


def test_what_a_busy_tenant_had_indexed_late_is_repaired_by_the_reconciliation(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=400)
    sync.sync_tenant(tenant=tenant)
    for cycle in range(2):
        devcloud.evolve(tid(tenant), changed=85, new=0, seed=cycle)
        sync.sync_tenant(tenant=tenant)
    devcloud.evolve(tid(tenant), changed=3, new=1, seed=7, late_seconds=60)
    devcloud.evolve(tid(tenant), changed=85, new=0, seed=8)
    # No room below the watermark in a busy tenant's page: the late ones stay behind...
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.api_calls) == (SyncOutcome.SUCCESS, 1)
    behind = stale_or_missing(devcloud, tenant)
    assert behind
    # ...until the reconciliation pass, which lists everything.
    run = sync.sync_tenant(tenant=tenant, reconcile=True)
    assert run.missing_repaired + run.stale_repaired == len(behind)
    assert_db_matches(devcloud, tenant)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500, "count": 2},
        {"kind": "status", "status": 503, "count": 1},
        {"kind": "reset", "count": 2},
        {"kind": "hang", "hang_s": 3, "count": 1},
        {"kind": "truncate", "count": 2},
        {"kind": "malformed", "count": 1},
        {"kind": "status", "status": 429, "retry_after": 1, "count": 3},
    ],
    ids=lambda f: f"{f['kind']}-{f.get('status', '')}",
)
def test_transient_faults_mid_run_resume_from_the_cursor(
    db, devcloud, devcloud_settings, settings, fault
):
    settings.MICROSOFT_HTTP_TIMEOUT = 1
    tenant = make_tenant(devcloud, devcloud_settings, count=420)
    devcloud.add_fault(endpoint="list_incidents", tenant=tid(tenant), after=2, **fault)
    run = sync_like_the_task(tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert_db_matches(devcloud, tenant)
    assert run.created_count == 420
    # Resumed where it stopped: 5 pages + the failed calls, no page fetched twice.
    calls = devcloud.requests_log(tid(tenant))["by_endpoint"]["list_incidents"]
    assert calls == 5 + fault["count"]
    assert run.api_calls == calls
    if fault.get("status") == 429:
        assert run.throttled_waits == 3


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 503, "count": 1},
        {"kind": "status", "status": 429, "retry_after": 1, "count": 2},
    ],
    ids=lambda f: str(f["status"]),
)
def test_reading_ahead_a_run_still_resumes_from_the_page_it_stored(
    transactional_db, devcloud, devcloud_settings, monkeypatch, fault
):
    # Outside a test's transaction the next page is fetched while this one is stored.
    readers = []
    start = threading.Thread.start

    def watched(thread):
        readers.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", watched)
    tenant = make_tenant(devcloud, devcloud_settings, count=420)
    devcloud.add_fault(endpoint="list_incidents", tenant=tid(tenant), after=2, **fault)
    run = sync_like_the_task(tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert "sync-read-ahead" in readers
    assert_db_matches(devcloud, tenant)
    calls = devcloud.requests_log(tid(tenant))["by_endpoint"]["list_incidents"]
    assert run.api_calls == calls == 5 + fault["count"]


def test_two_concurrent_syncs_of_one_tenant_one_runs_the_other_skips(
    db, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=150)
    seen = []

    def start_another(run):
        if not seen:
            seen.append(sync.sync_tenant(tenant=tenant))

    run = sync.sync_tenant(tenant=tenant, progress=start_another)
    assert run.outcome == SyncOutcome.SUCCESS
    assert seen[0].outcome == SyncOutcome.SKIPPED
    assert_db_matches(devcloud, tenant)


def test_an_expired_lease_is_taken_over(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    Tenant.objects.filter(pk=tenant.pk).update(
        sync_lease_until=timezone.now() + timedelta(seconds=60)
    )
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SKIPPED
    Tenant.objects.filter(pk=tenant.pk).update(
        sync_lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS


@pytest.mark.parametrize(
    ("consent", "error_class", "state"),
    [
        ({"state": "none"}, "ConsentRequired", "revoked"),
        ({"state": "no_roles", "roles": []}, "MissingPermissions", "missing_permissions"),
    ],
)
def test_permanent_errors_are_recorded_with_the_consent_state_they_imply(
    db, devcloud, devcloud_settings, consent, error_class, state
):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    devcloud.set_consent(tid(tenant), devcloud_settings["client_id"], **consent)
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, error_class)
    log = devcloud.requests_log(tid(tenant))["by_endpoint"]
    assert run.api_calls == log.get("list_incidents", 0)
    tenant.refresh_from_db()
    assert tenant.consent_state == state
    assert tenant.last_sync_error_class == error_class
    assert tenant.incidents_watermark is None


def requests_by_endpoint(devcloud, tenant) -> dict[str, int]:
    return devcloud.requests_log(tid(tenant))["by_endpoint"]


def test_a_401_mid_run_costs_one_new_token_and_the_run_carries_on(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=150)
    # devcloud's own 401 ("Invalid Authorization payload."), as for a revoked token.
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=401, after=1, count=1
    )
    run = sync.sync_tenant(tenant=tenant)
    assert run.outcome == SyncOutcome.SUCCESS
    assert (run.pages, run.created_count) == (2, 150)
    assert_db_matches(devcloud, tenant)
    log = requests_by_endpoint(devcloud, tenant)
    # Without the 401: 1 token and 2 pages. With it: exactly one more of each.
    assert (log["token"], log["list_incidents"]) == (2, 3)
    assert run.api_calls == 3
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED
    assert tenant.consent_error_class == ""

    # The new token is the one cached: the next run asks Entra for none.
    devcloud.clear_requests()
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS
    assert requests_by_endpoint(devcloud, tenant).get("token", 0) == 0


def test_two_401s_in_a_row_are_forbidden_as_before(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=401, count=2
    )
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "Forbidden")
    log = requests_by_endpoint(devcloud, tenant)
    assert (log["token"], log["list_incidents"], run.api_calls) == (2, 2, 2)
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.MISSING_PERMISSIONS
    assert tenant.consent_error_class == "Forbidden"
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_a_403_is_permanent_at_once_without_a_new_token(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SUCCESS
    devcloud.clear_requests()
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=403, count=1
    )
    run = sync.sync_tenant(tenant=tenant)
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "Forbidden")
    log = requests_by_endpoint(devcloud, tenant)
    assert (log.get("token", 0), log["list_incidents"]) == (0, 1)
    tenant.refresh_from_db()
    assert tenant.consent_state == Tenant.ConsentState.MISSING_PERMISSIONS


def test_a_full_sync_ignores_the_watermark(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=120)
    sync.sync_tenant(tenant=tenant)
    changed = devcloud.evolve(tid(tenant), changed=5, new=0)["changed"]
    run = sync.sync_tenant(tenant=tenant, full=True)
    # Every incident read again; updated, only those that changed since.
    assert (run.pages, run.updated_count, run.full) == (2, len(changed), True)


def test_sync_due_tenants_lists_enabled_consented_tenants_only(db):
    due = ConsentedTenantFactory()
    ConsentedTenantFactory(sync_enabled=False)
    ConsentedTenantFactory(is_active=False)
    ConsentedTenantFactory(consent_state=Tenant.ConsentState.REVOKED)
    TenantFactory()
    ConsentedTenantFactory(sync_lease_until=timezone.now() + timedelta(minutes=1))
    assert sync.sync_due_tenants() == [due.pk]


def test_an_interrupted_run_keeps_the_tenant_until_its_retry(db, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=429, count=1, after=1
    )
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    assert isinstance(info.value.cause, errors.Throttled)
    resume = info.value.cursor
    tenant.refresh_from_db()
    assert tenant.sync_lease_until > timezone.now() + timedelta(seconds=30)
    # Beat leaves it alone, and a run started meanwhile skips instead of starting over...
    assert tenant.pk not in sync.sync_due_tenants()
    assert sync.sync_tenant(tenant=tenant).outcome == SyncOutcome.SKIPPED
    # ...while the retry itself takes it back and finishes from its cursor.
    run = sync.sync_tenant(tenant=tenant, resume=resume)
    assert (run.outcome, run.pages, run.throttled_waits) == (SyncOutcome.SUCCESS, 3, 1)
    assert devcloud.requests_log(tid(tenant))["by_endpoint"]["list_incidents"] == 4
    tenant.refresh_from_db()
    assert tenant.sync_lease_until is None


def test_giving_up_lets_go_of_the_tenant(db, devcloud, devcloud_settings, settings):
    settings.SYNC_MAX_RETRIES = 1
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    devcloud.add_fault(endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500)
    with pytest.raises(errors.RetryLater) as info:
        sync.sync_tenant(tenant=tenant)
    tenant.refresh_from_db()
    assert tenant.sync_lease_until is not None  # held over the retry's countdown
    run = sync.sync_tenant(tenant=tenant, resume=info.value.cursor)
    assert (run.outcome, run.error_class) == (SyncOutcome.FAILED, "Transient")
    tenant.refresh_from_db()
    assert tenant.sync_lease_until is None
    assert tenant.last_sync_outcome == SyncOutcome.FAILED
    assert tenant.pk in sync.sync_due_tenants()
