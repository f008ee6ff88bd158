"""Thin Celery tasks: look up arguments, call the plain functions in incidents.sync, map
its RetryLater to a retry."""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from partner_portal.incidents import actions, sync
from partner_portal.incidents.models import IncidentActionJob, SyncOutcome, SyncRun
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import Tenant

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_all_tenants() -> int:
    """Beat's entry point: one sync_tenant per enabled, consented tenant (ids only)."""
    tenant_pks = sync.sync_due_tenants()
    fan_out(tenant_pks, reconcile=set(sync.reconcile_due(tenant_pks)))
    return len(tenant_pks)


def fan_out(tenant_pks: list[int], *, reconcile: Set[int] = frozenset()) -> None:
    """Queue a sync of each tenant, in their order (so that each keeps its place in the
    cycle, a schedule interval between two of its runs): a reconciliation pass for those
    in `reconcile`; quiet tenants up to `SYNC_BATCH_SIZE` to a `sync_tenants` task (fewer
    towards the end: `batch_sizes`); the others one to a `sync_tenant` task."""
    size = settings.SYNC_BATCH_SIZE
    quiet = sync.quiet_tenants(tenant_pks) - reconcile if size > 1 else set()
    sizes = iter(batch_sizes(len(quiet), size))
    batch: list[int] = []
    for tenant_pk in tenant_pks:
        if tenant_pk in reconcile:
            sync_tenant.delay(tenant_pk=tenant_pk, reconcile=True)
        elif tenant_pk in quiet:
            if not batch:
                batch_size = next(sizes, 1)  # (more than counted: a tenant listed twice)
            batch.append(tenant_pk)
            if len(batch) == batch_size:
                sync_tenants.delay(tenant_pks=batch)
                batch = []
        else:
            sync_tenant.delay(tenant_pk=tenant_pk)
    if batch:
        sync_tenants.delay(tenant_pks=batch)


# How many of the quiet tenants left to queue a batch takes at most: 1/32, so that the
# cycle's last batches are short.
TAIL_SHARE = 32


def batch_sizes(count: int, size: int) -> list[int]:
    """The sizes of the batches `count` quiet tenants are queued in: `size` each, but never
    more than 1/TAIL_SHARE of those left, down to one tenant a task for the last ones.

    The worker slots take the batches in turn, and the cycle ends with the last to finish:
    with batches of equal size, the slots that take the last ones are still at work for a
    whole batch (10 runs) after the others went idle — 1,000 tenants in 100 batches on 16
    slots took 7 batch-lengths where 6.25 were needed. With batches shrinking to one run,
    every slot finishes within about a run of the others, at the cost of some more tasks
    (~2.5 ms of Celery's CPU each): 1,000 tenants go in 161 instead of 100."""
    sizes = []
    while count > 0:
        take = max(1, min(size, -(-count // TAIL_SHARE)))
        sizes.append(take)
        count -= take
    return sizes


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
    max_retries=None,  # the sync bounds its own retries (sync._retry_later)
)
def sync_tenant(
    self: Any,
    tenant_pk: int | None = None,
    full: bool = False,
    resume: dict[str, Any] | None = None,
    tenant_id: int | None = None,  # the old name of tenant_pk, for messages still queued
    requested: bool = False,  # "Sync now": if the tenant is busy, run once more after it
    reconcile: bool = False,  # a reconciliation pass (sync.reconcile_due)
) -> str:
    """Sync one tenant. Idempotent: a redelivered or repeated run re-upserts, never
    duplicates, and starts from the committed watermark (or `resume`, a retry's cursor)."""
    tenant_pk = tenant_pk if tenant_pk is not None else tenant_id
    tenant = Tenant.objects.filter(pk=tenant_pk).first() if tenant_pk is not None else None
    if tenant is None:
        return "gone"
    try:
        run = sync.sync_tenant(
            tenant=tenant,
            full=full,
            task_id=self.request.id,
            resume=resume,
            follow_up_if_busy=requested,
            reconcile=reconcile,
        )
    except RetryLater as later:
        # Never sleep in a worker: the broker brings the task back after the countdown.
        raise self.retry(
            kwargs={
                "tenant_pk": tenant_pk,
                "full": full,
                "resume": later.cursor,
                "reconcile": reconcile,
            },
            countdown=later.countdown,
            exc=later.cause,
        ) from later
    _follow_up(tenant=tenant, run=run, task_id=self.request.id)
    return run.outcome


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
)
def sync_tenants(self: Any, tenant_pks: list[int]) -> int:
    """Sync quiet tenants one after the other (`fan_out`), each as `sync_tenant` would: its
    own lease and SyncRun, its retry as a `sync_tenant` task of its own, its failure its
    own — the next tenant is synced all the same. Idempotent as `sync_tenant` is: a
    redelivered batch syncs its tenants again."""
    tenants = Tenant.objects.in_bulk(tenant_pks)
    for n, tenant_pk in enumerate(tenant_pks):
        tenant = tenants.get(tenant_pk)
        if tenant is None:
            continue
        try:
            run = sync.sync_tenant(tenant=tenant, task_id=self.request.id)
        except RetryLater as later:
            sync_tenant.apply_async(
                kwargs={"tenant_pk": tenant_pk, "resume": later.cursor}, countdown=later.countdown
            )
            continue
        except SoftTimeLimitExceeded:
            # Out of time (the run recorded it): the rest get a task each, now.
            fan_out([pk for pk in tenant_pks[n + 1 :] if pk in tenants])
            raise
        except Exception:  # a bug with one tenant (its run recorded it) is that tenant's
            logger.exception("Sync of tenant %s failed; the batch goes on", tenant_pk)
            continue
        _follow_up(tenant=tenant, run=run, task_id=self.request.id)
    return len(tenant_pks)


def _follow_up(*, tenant: Tenant, run: SyncRun, task_id: str) -> None:
    if run.outcome in (SyncOutcome.SUCCESS, SyncOutcome.FAILED) and run.task_id == task_id:
        # This run held the tenant: a "Sync now" pressed meanwhile runs now, once.
        follow_up = tenant.take_follow_up_sync()
        if follow_up:
            sync_tenant.delay(tenant_pk=tenant.pk, full=follow_up == "full")


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
    max_retries=None,  # actions.run_job bounds retries per item (ACTIONS_MAX_RETRIES)
)
def run_action_job(self: Any, job_pk: int) -> str:
    """Work a bulk action's pending items. Idempotent: items with an outcome are skipped, so
    a redelivered task only does what is left."""
    job = IncidentActionJob.objects.filter(pk=job_pk).select_related("created_by").first()
    if job is None:
        return "gone"
    countdown = actions.run_job(job=job)
    if countdown is not None:
        # The tenant's budget (or Microsoft) asked to wait: come back then, never sleep.
        raise self.retry(kwargs={"job_pk": job_pk}, countdown=countdown)
    return "done"
