"""Thin Celery tasks: look up arguments, call the plain functions in incidents.sync, map
its RetryLater to a retry."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from celery import shared_task
from django.conf import settings

from partner_portal.incidents import actions, sync
from partner_portal.incidents.models import IncidentActionJob, SyncOutcome
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import Tenant


@shared_task(ignore_result=True)
def sync_all_tenants() -> int:
    """Beat's entry point: one sync_tenant per enabled, consented tenant (ids only)."""
    tenant_pks = sync.sync_due_tenants()
    fan_out(tenant_pks, reconcile=set(sync.reconcile_due(tenant_pks)))
    return len(tenant_pks)


def fan_out(tenant_pks: list[int], *, reconcile: Set[int] = frozenset()) -> None:
    """Queue one sync per tenant (a reconciliation pass for those in `reconcile`)."""
    for tenant_pk in tenant_pks:
        if tenant_pk in reconcile:
            sync_tenant.delay(tenant_pk=tenant_pk, reconcile=True)
        else:
            sync_tenant.delay(tenant_pk=tenant_pk)


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
    if run.outcome in (SyncOutcome.SUCCESS, SyncOutcome.FAILED) and run.task_id == self.request.id:
        # This run held the tenant: a "Sync now" pressed meanwhile runs now, once.
        follow_up = tenant.take_follow_up_sync()
        if follow_up:
            sync_tenant.delay(tenant_pk=tenant_pk, full=follow_up == "full")
    return run.outcome


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
