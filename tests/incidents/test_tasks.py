"""The sync through real Celery workers on a real Redis, against devcloud.

Workers are subprocesses (tests/workers.py) on the test database; tests enqueue tasks as
beat or the "Sync now" button would and wait on the database.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from partner_portal.incidents import sync, tasks
from partner_portal.incidents.models import Incident, SyncOutcome, SyncRun
from partner_portal.tenants.models import Tenant
from tests.factories import TenantFactory
from tests.incidents.helpers import assert_db_matches, make_tenant, tid
from tests.services import service_unavailable
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

FAST = {"SYNC_RETRY_BACKOFF_SECONDS": "1", "MICROSOFT_HTTP_TIMEOUT": "2"}


def finished(tenant, outcome=SyncOutcome.SUCCESS, count=1):
    return lambda: SyncRun.objects.filter(tenant=tenant, outcome=outcome).count() >= count


def list_calls(devcloud, tenant) -> list[dict]:
    entries = devcloud.requests_log(tid(tenant))["entries"]
    return [e for e in entries if e["endpoint"] == "list_incidents"]


def stamp(entry) -> datetime:
    return datetime.fromisoformat(entry["time"][:26].rstrip("Z") + "+00:00")


def test_beat_fan_out_syncs_every_consented_tenant(start_worker, devcloud, devcloud_settings):
    a = make_tenant(devcloud, devcloud_settings, count=120)
    b = make_tenant(devcloud, devcloud_settings, count=0)
    c = make_tenant(devcloud, devcloud_settings, count=10, sync_enabled=False)
    start_worker(concurrency=2, env=FAST)
    tasks.sync_all_tenants.delay()
    wait_until(finished(a), timeout=30, what="tenant a synced")
    wait_until(finished(b), timeout=30, what="tenant b synced")
    assert_db_matches(devcloud, a)
    assert not SyncRun.objects.filter(tenant=c).exists()


def test_a_429_storm_waits_exactly_retry_after_and_costs_no_extra_calls(
    start_worker, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=450)
    devcloud.add_fault(
        endpoint="list_incidents",
        tenant=tid(tenant),
        kind="status",
        status=429,
        retry_after=1,
        count=3,
        after=2,
    )
    start_worker(concurrency=2, env=FAST)
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(finished(tenant), timeout=60, what="sync to succeed")
    assert_db_matches(devcloud, tenant)
    calls = list_calls(devcloud, tenant)
    statuses = [e["status"] for e in calls]
    # 5 pages, each fetched once, plus the 3 throttled calls: nothing more.
    assert statuses.count(429) == 3
    assert statuses.count(200) == 5
    assert len(calls) == 8
    for before, after in zip(calls, calls[1:], strict=False):
        if before["status"] == 429:
            assert (stamp(after) - stamp(before)).total_seconds() >= 1 - 0.05
    run = SyncRun.objects.get(tenant=tenant, outcome=SyncOutcome.SUCCESS)
    assert (run.throttled_waits, run.pages, run.api_calls) == (3, 5, 8)


def test_server_errors_retry_with_backoff_and_then_succeed(
    start_worker, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=250)
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(tenant), kind="status", status=503, count=2, after=1
    )
    start_worker(concurrency=1, env=FAST)
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(finished(tenant), timeout=60, what="sync to succeed")
    assert_db_matches(devcloud, tenant)
    calls = list_calls(devcloud, tenant)
    assert [e["status"] for e in calls] == [200, 503, 503, 200, 200]
    # Backoff: ≥ 1 s, then ≥ 2 s (base 1 s, doubled, plus jitter).
    assert (stamp(calls[2]) - stamp(calls[1])).total_seconds() >= 0.95
    assert (stamp(calls[3]) - stamp(calls[2])).total_seconds() >= 1.95


def test_retries_are_bounded(start_worker, devcloud, devcloud_settings):
    tenant = make_tenant(devcloud, devcloud_settings, count=5)
    devcloud.add_fault(endpoint="list_incidents", tenant=tid(tenant), kind="status", status=500)
    start_worker(concurrency=1, env={**FAST, "SYNC_MAX_RETRIES": "2"})
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    # The run closes, then the tenant says so (two statements): wait for both.
    wait_until(
        lambda: (
            finished(tenant, SyncOutcome.FAILED)()
            and Tenant.objects.filter(pk=tenant.pk, last_sync_outcome=SyncOutcome.FAILED).exists()
        ),
        timeout=60,
        what="sync to give up",
    )
    assert len(list_calls(devcloud, tenant)) == 3  # the first try and 2 retries
    tenant.refresh_from_db()
    assert tenant.last_sync_outcome == SyncOutcome.FAILED
    assert tenant.last_sync_error_class == "Transient"
    assert tenant.consent_state == Tenant.ConsentState.CONSENTED


def test_a_worker_killed_mid_sync_loses_nothing_and_a_new_worker_finishes(
    start_worker, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=1000)
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=250)
    env = {**FAST, "SYNC_LEASE_SECONDS": "4"}
    first = start_worker(concurrency=1, env=env)
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(
        lambda: SyncRun.objects.filter(tenant=tenant, pages__gte=2).exists(),
        timeout=30,
        what="the sync to be mid-run",
    )
    first.kill()
    killed_at = timezone.now()
    tenant.refresh_from_db()
    # The dead run never let go of the tenant (its token is still on it; whether its lease
    # has expired yet depends on the machine's load, not on the sync)...
    assert tenant.sync_lease_token and tenant.sync_lease_until is not None
    # ...and the lease it renewed last ends within one lease of its death.
    assert tenant.sync_lease_until <= killed_at + timedelta(seconds=4)
    assert tenant.incidents_watermark is None  # ...and never moved the watermark
    partial = Incident.objects.filter(tenant=tenant).count()
    assert 0 < partial < 1000
    devcloud.clear_faults()
    start_worker(concurrency=1, env=env)
    # Beat's next tick: the tenant is due again once the dead run's lease expired.
    wait_until(lambda: tenant.pk in sync.sync_due_tenants(), timeout=10, what="lease to expire")
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(finished(tenant), timeout=30, what="a new worker to finish")
    assert_db_matches(devcloud, tenant)
    lost = SyncRun.objects.get(tenant=tenant, error_class="WorkerLost")
    assert lost.outcome == SyncOutcome.FAILED


def test_two_syncs_of_one_tenant_at_once_one_runs_the_other_skips(
    start_worker, devcloud, devcloud_settings
):
    tenant = make_tenant(devcloud, devcloud_settings, count=300)
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=300)
    start_worker(concurrency=2, env=FAST)
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(finished(tenant), timeout=30, what="one sync to succeed")
    wait_until(finished(tenant, SyncOutcome.SKIPPED), timeout=10, what="the other to skip")
    assert_db_matches(devcloud, tenant)
    assert len(list_calls(devcloud, tenant)) == 3


def test_consent_revoked_mid_run_is_explained_and_other_tenants_carry_on(
    start_worker, devcloud, devcloud_settings
):
    victim = make_tenant(devcloud, devcloud_settings, count=800)
    other = make_tenant(devcloud, devcloud_settings, count=800)
    # Short-lived tokens (MSAL renews those expiring within 5 minutes on every call), so
    # that the revocation bites on the next page, not in an hour.
    devcloud.set_limits(token_lifetime=10)
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=250)
    start_worker(concurrency=2, env=FAST)
    tasks.sync_tenant.delay(tenant_pk=victim.pk)
    tasks.sync_tenant.delay(tenant_pk=other.pk)
    wait_until(
        lambda: SyncRun.objects.filter(tenant=victim, pages__gte=2).exists(),
        timeout=30,
        what="mid-run",
    )
    devcloud.revoke_consent(tid(victim), devcloud_settings["client_id"])
    wait_until(finished(victim, SyncOutcome.FAILED), timeout=30, what="victim to fail")
    wait_until(finished(other), timeout=30, what="other to succeed")
    victim.refresh_from_db()
    assert victim.consent_state == Tenant.ConsentState.REVOKED
    assert victim.last_sync_error_class == "ConsentRequired"
    assert victim.incidents_watermark is None
    assert_db_matches(devcloud, other)
    other.refresh_from_db()
    assert other.consent_state == Tenant.ConsentState.CONSENTED


def test_four_workers_on_one_big_tenant_never_get_a_429(
    start_worker, devcloud, devcloud_settings, settings
):
    # devcloud allows 10 calls a minute; our budget says 10 too. 15 pages need 2 windows:
    # the budget must stop us (a throttled SyncRun), not devcloud.
    devcloud.set_limits(per_minute=10)
    tenant = make_tenant(devcloud, devcloud_settings, count=1500)
    # One worker of 4 processes (prefork): four syncs of the tenant at once.
    start_worker(concurrency=4, pool="prefork", env={**FAST, "DEFENDER_CALLS_PER_MINUTE": "10"})
    for _ in range(4):
        tasks.sync_tenant.delay(tenant_pk=tenant.pk)
    wait_until(finished(tenant, SyncOutcome.THROTTLED), timeout=60, what="budget to bite")
    log = devcloud.requests_log(tid(tenant))
    assert log["by_status"].get("429", 0) == 0
    assert log["by_endpoint"]["list_incidents"] == 10
    run = SyncRun.objects.get(tenant=tenant, outcome=SyncOutcome.THROTTLED)
    assert run.error_class == "Throttled"
    assert 1 <= run.pages <= 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    """A throwaway Redis server of our own (the shared one must not be restarted)."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(tmp_path)]

    def start():
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            service_unavailable("redis-server")
        import redis

        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server to start")
        return proc

    server = {"proc": start(), "url": f"redis://127.0.0.1:{port}/0", "start": start}
    yield server
    server["proc"].kill()
    server["proc"].wait()


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


def send(app, url: str, tenant) -> None:
    # An explicit connection: the app's producer pool still points at the shared Redis.
    with app.connection_for_write(url) as connection:
        tasks.sync_tenant.apply_async(kwargs={"tenant_pk": tenant.pk}, connection=connection)


def test_redis_restarted_mid_run_loses_nothing(
    own_redis, start_worker, devcloud, devcloud_settings, settings
):
    from partner_portal.celery import app

    tenant = make_tenant(devcloud, devcloud_settings, count=800)
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=300)
    start_worker(concurrency=1, env={**FAST, "REDIS_URL": own_redis["url"]})
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": own_redis["url"],
        }
    }
    send(app, own_redis["url"], tenant)
    wait_until(
        lambda: SyncRun.objects.filter(tenant=tenant, pages__gte=2).exists(),
        timeout=30,
        what="mid-run",
    )
    own_redis["proc"].kill()
    own_redis["proc"].wait()
    own_redis["proc"] = own_redis["start"]()
    # The running sync needs Redis only for the call budget: it carries on.
    wait_until(finished(tenant), timeout=30, what="the interrupted run to finish")
    assert_db_matches(devcloud, tenant)
    # The worker reconnected: the next scheduled sync runs too.
    devcloud.clear_faults()
    devcloud.evolve(tid(tenant), changed=10, new=3)
    send(app, own_redis["url"], tenant)
    wait_until(finished(tenant, count=2), timeout=60, what="a sync after the restart")
    assert_db_matches(devcloud, tenant)


def test_the_task_takes_tenant_pk_and_still_the_old_tenant_id(db):
    # Messages queued before the rename carry `tenant_id`; both must reach the same tenant.
    tenant = TenantFactory()  # no Entra tenant ID yet: the run fails without a network call
    assert tasks.sync_tenant.apply(kwargs={"tenant_pk": tenant.pk}).get() == SyncOutcome.FAILED
    assert tasks.sync_tenant.apply(kwargs={"tenant_id": tenant.pk}).get() == SyncOutcome.FAILED
    runs = SyncRun.objects.filter(tenant=tenant, error_class="TenantNotFound")
    assert runs.count() == 2
    assert tasks.sync_tenant.apply(kwargs={"tenant_id": tenant.pk + 1000}).get() == "gone"


def test_the_run_holding_the_tenant_queues_the_follow_up_once(db, monkeypatch):
    tenant = TenantFactory()  # no Entra tenant ID: the run fails without a network call
    client, pressed = Tenant.incident_client, []

    def sync_now_pressed_meanwhile(self, **kwargs):
        if not pressed:  # while the run holds the tenant
            pressed.append(
                Tenant.objects.get(pk=self.pk).request_follow_up_sync(full=True, now=timezone.now())
            )
        return client(self, **kwargs)

    monkeypatch.setattr(Tenant, "incident_client", sync_now_pressed_meanwhile)
    queued = []
    monkeypatch.setattr(tasks.sync_tenant, "delay", lambda **kw: queued.append(kw))
    assert tasks.sync_tenant.apply(kwargs={"tenant_pk": tenant.pk}).get() == SyncOutcome.FAILED
    assert pressed == [True]
    assert queued == [{"tenant_pk": tenant.pk, "full": True}]
    tasks.sync_tenant.apply(kwargs={"tenant_pk": tenant.pk}).get()
    assert len(queued) == 1  # once


def test_a_worker_keeps_its_database_connection_across_tasks(
    start_worker, devcloud, devcloud_settings
):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL connection is the one that costs")
    tenants = [make_tenant(devcloud, devcloud_settings, count=3) for _ in range(3)]
    name = f"worker-{uuid.uuid4().hex[:12]}"  # libpq names the worker's connections
    start_worker(concurrency=1, env={**FAST, "PGAPPNAME": name})

    def backends() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
            return {pid for (pid,) in cursor.fetchall()}

    tasks.sync_tenant.delay(tenant_pk=tenants[0].pk)
    wait_until(finished(tenants[0]), timeout=30, what="the first sync")
    first = wait_until(backends, what="the first task's connection")
    for tenant in tenants[1:]:
        tasks.sync_tenant.delay(tenant_pk=tenant.pk)
        wait_until(finished(tenant), timeout=30, what="the next sync")
    # Celery's Django fixup would have closed it after the first task (a new one per task).
    assert first <= backends()


def test_quiet_tenants_share_a_task_each_with_its_own_lease_run_and_retry(
    start_worker, devcloud, devcloud_settings, settings, monkeypatch
):
    settings.SYNC_BATCH_SIZE = 3
    monkeypatch.setattr(tasks, "TAIL_SHARE", 1)  # three tenants in one batch, not three
    quiet = [make_tenant(devcloud, devcloud_settings, count=5) for _ in range(3)]
    busy = make_tenant(devcloud, devcloud_settings, count=150)  # two pages
    for tenant in [*quiet, busy]:
        sync.sync_tenant(tenant=tenant)
    assert sync.quiet_tenants([t.pk for t in [*quiet, busy]]) == {t.pk for t in quiet}
    for tenant in [*quiet, busy]:
        devcloud.evolve(tid(tenant), changed=2, new=1)
    # One quiet tenant's answer fails once: it retries alone, the others carry on.
    devcloud.add_fault(
        endpoint="list_incidents", tenant=tid(quiet[1]), kind="status", status=500, count=1
    )
    start_worker(concurrency=2, env=FAST)
    tasks.fan_out([t.pk for t in [*quiet, busy]])
    for tenant in [*quiet, busy]:
        wait_until(finished(tenant, count=2), timeout=60, what="the second sync")
        assert_db_matches(devcloud, tenant)
    runs = {t.pk: SyncRun.objects.filter(tenant=t).latest("started_at") for t in quiet}
    assert runs[quiet[0].pk].task_id == runs[quiet[2].pk].task_id  # one task for the batch
    assert runs[quiet[1].pk].task_id != runs[quiet[0].pk].task_id  # its retry, a task of its own
    assert SyncRun.objects.filter(tenant=busy).latest("started_at").task_id not in {
        r.task_id for r in runs.values()
    }
    assert Tenant.objects.filter(sync_lease_token="").count() == Tenant.objects.count()


@pytest.mark.parametrize("count", [0, 1, 3, 31, 32, 33, 100, 319, 320, 321, 1000, 4999])
@pytest.mark.parametrize("size", [1, 2, 10, 50])
def test_batches_shrink_to_one_tenant_towards_the_cycles_end(count, size):
    sizes = tasks.batch_sizes(count, size)
    assert sum(sizes) == count
    assert all(1 <= n <= size for n in sizes)
    assert sizes == sorted(sizes, reverse=True)  # the long batches first
    left = count
    for n in sizes:  # none takes more than its share of what is left (or one)
        assert n <= max(1, -(-left // tasks.TAIL_SHARE))
        left -= n
    last = tasks.TAIL_SHARE - 1  # once fewer than TAIL_SHARE are left, one a task
    assert sizes[-last:] == [1] * min(count, last)
    if count >= size * tasks.TAIL_SHARE * 2:  # a large fleet still goes mostly in full batches
        assert sizes.count(size) * size > count / 2
