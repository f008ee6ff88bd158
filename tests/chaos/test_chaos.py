"""The chaos suite (fast scenarios): real workers, a private Redis killed with -9, workers
SIGKILLed, lost and duplicated messages, Microsoft's clock shifted and stepped back, consent
revoked and re-granted, against devcloud — 0 lost, 0 duplicated and 0 stale after recovery,
within 2 schedule intervals. `python bench/chaos.py` prints the table.
"""

from __future__ import annotations

import os
import time

import pytest
from django.utils import timezone

from partner_portal.consent.tasks import verify_tenant_access
from partner_portal.incidents.models import SyncRun
from partner_portal.tenants.models import ConsentState, Tenant
from tests.chaos.harness import (
    LEASE_SECONDS,
    RECONNECT_SECONDS,
    SCHEDULE_SECONDS,
    WORKER_ENV,
    OwnRedis,
    Row,
    busy,
    calls_and_429s,
    differences,
    minimum_calls,
    reconnected_after,
    record,
    run_until_recovered,
    send_sync,
)
from tests.incidents.helpers import make_tenant, tid
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# Recovered within 2 schedule intervals once the fault is over (plus one lease for a dead
# run's tenant, and the few seconds a sync of these tenants takes).
RECOVERY_LIMIT = 2 * SCHEDULE_SECONDS + LEASE_SECONDS + 6


@pytest.fixture
def chaos(tmp_path, start_worker, devcloud, devcloud_settings, settings):
    from partner_portal.celery import app

    redis = OwnRedis(tmp_path)
    redis.start()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis.url}
    }

    class Env:
        def __init__(self) -> None:
            self.app, self.redis, self.devcloud = app, redis, devcloud
            self.tenants: list = []
            self.workers: list = []

        def setup(self, *, tenants: int = 2, count: int = 300, latency_ms: int = 200) -> None:
            self.tenants = [
                make_tenant(devcloud, devcloud_settings, count=count, seed=i + 1)
                for i in range(tenants)
            ]
            devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=latency_ms)

        def worker(self, queues: str = "", **env: str):
            env = {**WORKER_ENV, "REDIS_URL": redis.url, **env}
            worker = start_worker(concurrency=2, env=env, queues=queues)
            self.workers.append(worker)
            return worker

        def send(self, tenant, **kwargs) -> None:
            send_sync(app, redis.url, tenant.pk, **kwargs)

        def mid_run(self, pages: int = 1) -> None:
            wait_until(
                lambda: all(
                    SyncRun.objects.filter(tenant=t, pages__gte=pages).exists()
                    for t in self.tenants
                ),
                timeout=30,
                what="every tenant mid-run",
            )

        def synced(self) -> None:
            """Every tenant synced and equal to devcloud, no sync running or queued."""
            for tenant in self.tenants:
                self.send(tenant)

            def settled() -> bool:
                if redis.client().llen("celery") or busy(self.tenants):
                    return False
                return all(differences(devcloud, t) == (0, 0, 0) for t in self.tenants)

            wait_until(settled, timeout=60, interval=0.5, what="every tenant synced")

        def recover(self, scenario: str) -> Row:
            devcloud.clear_faults()
            started = time.monotonic()
            seconds, (lost, duplicated, stale) = run_until_recovered(
                app, redis.url, devcloud, self.tenants, started=started, limit=RECOVERY_LIMIT + 10
            )
            calls, throttled = calls_and_429s(devcloud, self.tenants)
            alive = sum(w.proc.poll() is None for w in self.workers)
            return record(
                Row(
                    scenario=scenario,
                    lost=lost,
                    duplicated=duplicated,
                    stale=stale,
                    extra_calls=calls - minimum_calls(devcloud, self.tenants),
                    throttled_429=throttled,
                    recover_seconds=round(seconds, 1),
                    workers_alive=f"{alive}/{len(self.workers)}",
                )
            )

    yield Env()
    redis.kill9()


def assert_recovered(row: Row, *, countdown: float = 0) -> None:
    assert (row.lost, row.duplicated, row.stale) == (0, 0, 0), row
    assert row.recover_seconds <= RECOVERY_LIMIT + countdown, row
    assert row.throttled_429 == 0, row


# Redis outages (seconds) with busy workers: CI runs one longer than kombu's first reconnect
# intervals; `bench/chaos.py` runs 5, 15 and 30.
REDIS_OUTAGES = [int(s) for s in os.environ.get("CHAOS_REDIS_OUTAGES", "15").split(",")]


@pytest.mark.parametrize("outage", REDIS_OUTAGES)
def test_redis_kill9_with_busy_workers(chaos, outage):
    # Two worker processes, both busy: before partner_portal.celery's fix of kombu's
    # restore path, both exited ("'NoneType' object has no attribute 'hostname'").
    chaos.setup()
    workers = [chaos.worker(), chaos.worker()]
    for tenant in chaos.tenants:
        chaos.send(tenant)
    chaos.mid_run()
    chaos.redis.kill9()
    for tenant in chaos.tenants:  # Microsoft moves on meanwhile
        chaos.devcloud.evolve(tid(tenant), changed=10, new=3)
    time.sleep(outage)  # the fault itself
    restarting = time.time()  # a worker may connect before start() has seen Redis answer
    chaos.redis.start()
    back, back_at = time.time(), timezone.now()
    row = chaos.recover(f"redis kill -9 ({outage} s), busy workers")
    for worker in workers:
        assert worker.proc.poll() is None, worker.output[-3000:]  # it survived
        assert "Unrecoverable error" not in worker.output
        # Listening again at once: kombu's own backoff retried 12 and 20 s after the loss,
        # 4-5 s after a 15 s outage ended.
        waited = reconnected_after(worker, restarting) - (back - restarting)
        assert waited <= 3 * RECONNECT_SECONDS, worker.output[-3000:]
    assert_recovered(row)
    # Every tenant synced again: its interrupted run resumed (its retry was sent before
    # Redis went), or, once that run's lease expired, the first ticks within one schedule
    # interval of Redis being back started a new one.
    for tenant in chaos.tenants:
        runs = SyncRun.objects.filter(tenant=tenant, outcome="success", finished_at__gte=back_at)
        first = runs.order_by("finished_at").first()
        assert first is not None
        assert (first.started_at - back_at).total_seconds() <= SCHEDULE_SECONDS + 1.5


def test_worker_sigkill_mid_sync(chaos):
    chaos.setup()
    first = chaos.worker()
    for tenant in chaos.tenants:
        chaos.send(tenant)
    chaos.mid_run()
    first.kill()
    chaos.worker()
    row = chaos.recover("worker SIGKILL mid-sync")
    assert_recovered(row)
    assert SyncRun.objects.filter(error_class="WorkerLost").count() == len(chaos.tenants)


def test_a_lost_retry_is_taken_over_by_the_scheduler(chaos):
    chaos.setup(latency_ms=0)
    for tenant in chaos.tenants:
        chaos.devcloud.add_fault(
            endpoint="list_incidents",
            tenant=str(tenant.entra_tenant_id),
            kind="status",
            status=503,
            after=1,
            count=1,
        )
    first = chaos.worker(SYNC_RETRY_BACKOFF_SECONDS="3")
    for tenant in chaos.tenants:
        chaos.send(tenant)
    wait_until(
        lambda: SyncRun.objects.filter(outcome="retrying").count() == len(chaos.tenants),
        timeout=30,
        what="every run waiting for its retry",
    )
    # The retries live only in the broker: kill the worker holding them and lose them.
    first.kill()
    # Wherever the retry message was (queued, or reserved by the dead worker): gone.
    chaos.redis.client().flushall()
    chaos.worker()
    row = chaos.recover("lost retry")
    # A lost retry holds its tenant for its countdown (3-6 s here) plus one lease.
    assert_recovered(row, countdown=6)
    assert SyncRun.objects.filter(error_class="RetryLost").count() == len(chaos.tenants)


def test_duplicate_deliveries_change_nothing(chaos):
    chaos.setup(latency_ms=100)
    chaos.worker()
    for tenant in chaos.tenants:
        for _ in range(3):
            chaos.send(tenant)
    row = chaos.recover("duplicate delivery (3 copies)")
    assert_recovered(row)
    for tenant in chaos.tenants:
        runs = SyncRun.objects.filter(tenant=tenant)
        assert runs.filter(outcome="success").count() >= 1
        assert not runs.filter(outcome__in=["running", "retrying", "throttled"]).exists()


def test_microsofts_clock_300s_ahead(chaos):
    # Tokens "issued" 5 minutes in our future: within the skew Microsoft's libraries allow
    # (beyond it an access check retries, see tests/microsoft/test_claims.py), never a
    # consent failure, never a disabled tenant.
    chaos.devcloud.set_limits(clock_offset=300)
    chaos.setup(latency_ms=0)
    chaos.worker()
    for tenant in chaos.tenants:
        chaos.send(tenant)
    row = chaos.recover("Microsoft's clock +300 s")
    assert_recovered(row)
    for tenant in chaos.tenants:
        tenant.refresh_from_db()
        assert tenant.consent_state == tenant.ConsentState.CONSENTED
        assert tenant.last_sync_outcome == "success"


def test_microsofts_clock_steps_back_600s(chaos):
    # Beyond the 5-minute overlap: changes are stamped before the watermark's window. The
    # first run after the step sees Microsoft's clock (the Date header) behind its window
    # and reads from further back: nothing skipped, no reconciliation needed.
    chaos.setup(latency_ms=0)
    for tenant in chaos.tenants:  # changes of the last moments: the watermark is now
        chaos.devcloud.evolve(tid(tenant), changed=5, new=1)
    chaos.worker()
    chaos.synced()
    stepped = timezone.now()
    chaos.devcloud.set_limits(clock_offset=-600)
    for tenant in chaos.tenants:
        chaos.devcloud.evolve(tid(tenant), changed=10, new=3)
    row = chaos.recover("Microsoft's clock steps back 600 s")
    assert_recovered(row)
    for tenant in chaos.tenants:
        first = SyncRun.objects.filter(tenant=tenant, started_at__gte=stepped).earliest(
            "started_at"
        )
        # The first run after the step, a plain success, took every change.
        assert (first.outcome, first.reconcile, first.created_count) == ("success", False, 3)


def test_consent_revoked_regranted_then_check_access(chaos, devcloud_settings):
    # Tokens short-lived enough that every sync asks Entra (as once the cached one expired).
    chaos.devcloud.set_limits(token_lifetime=120)
    chaos.setup(tenants=1, latency_ms=0)
    chaos.worker()  # the syncs
    chaos.worker(queues="checks")  # the access check, in another process
    chaos.synced()
    (tenant,) = chaos.tenants
    client_id = devcloud_settings["client_id"]
    # Entra's older answer without a service principal: AADSTS700016, a 400 (MSAL caches a
    # 400 for 60 s; the newer 7000229 is a 401, not cached).
    chaos.devcloud.update_tenant(tid(tenant), no_sp_error="700016")
    chaos.devcloud.revoke_consent(tid(tenant), client_id)
    chaos.send(tenant)
    wait_until(
        lambda: Tenant.objects.get(pk=tenant.pk).consent_state == ConsentState.REVOKED,
        what="the sync to find consent revoked",
    )
    # The syncing worker's MSAL app now replays Entra's "no consent" 400 for 60 s (§5.5).
    chaos.devcloud.set_consent(tid(tenant), client_id, roles=["Incident.Read.All"])
    chaos.devcloud.evolve(tid(tenant), changed=5, new=2)
    checked = timezone.now()
    with chaos.app.connection_for_write(chaos.redis.url) as connection:
        verify_tenant_access.apply_async(
            kwargs={"tenant_pk": tenant.pk}, queue="checks", connection=connection
        )
    # The check succeeds and queues a sync, which runs in the syncing worker.
    row = chaos.recover("consent revoked, re-granted, Check access")
    assert_recovered(row)
    first = SyncRun.objects.filter(tenant=tenant, started_at__gte=checked).earliest("started_at")
    assert (first.outcome, first.created_count) == ("success", 2), first.error_message
    tenant.refresh_from_db()
    assert (tenant.consent_state, tenant.consent_error_class) == (ConsentState.CONSENTED, "")


def test_microsoft_faults_mid_sync(chaos):
    # The earlier fault matrix at once, against busy workers: 5xx, a reset, a truncated and a
    # malformed page, incidents changing between pages, a garbled discovery answer and a
    # token endpoint 503 — all transient: retried (once per page here), never a consent
    # failure.
    chaos.setup(latency_ms=50)
    first, second = (tid(t) for t in chaos.tenants)
    faults = [
        {"tenant": first, "kind": "status", "status": 503, "after": 1},
        {"tenant": first, "kind": "reset", "after": 3},
        {"tenant": second, "kind": "truncate", "after": 1},
        {"tenant": second, "kind": "malformed", "after": 3},
    ]
    for fault in faults:
        chaos.devcloud.add_fault(endpoint="list_incidents", count=1, **fault)
    for tenant in (first, second):
        chaos.devcloud.add_fault(
            endpoint="list_incidents", tenant=tenant, kind="evolve", after=2, count=1, changed=5
        )
    chaos.devcloud.add_fault(endpoint="discovery", kind="malformed", count=1)
    chaos.devcloud.add_fault(endpoint="token", kind="status", status=503, count=1)
    chaos.worker()
    chaos.worker()
    for tenant in chaos.tenants:
        chaos.send(tenant)
    wait_until(
        lambda: all(f["applied"] >= f["count"] for f in chaos.devcloud.faults() if f["count"]),
        what="every fault to have fired",
    )
    row = chaos.recover("Microsoft faults mid-sync (5xx, reset, truncated, malformed, Entra)")
    assert_recovered(row)
    for tenant in chaos.tenants:
        tenant.refresh_from_db()
        assert (tenant.consent_state, tenant.consent_error_class) == (ConsentState.CONSENTED, "")
