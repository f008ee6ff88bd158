"""Thin Celery tasks: look up arguments, call the plain functions in incidents.sync, map
errors to a retry or a normal return."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task
from django.conf import settings

from partner_portal.incidents import sync
from partner_portal.microsoft import errors
from partner_portal.tenants.models import Tenant

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sync_all_tenants() -> int:
    """Beat's entry point: one sync_tenant per enabled, consented tenant (ids only)."""
    tenant_ids = sync.sync_due_tenants()
    for tenant_id in tenant_ids:
        sync_tenant.delay(tenant_id=tenant_id)
    return len(tenant_ids)


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=settings.SYNC_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.SYNC_TASK_TIME_LIMIT,
    max_retries=None,  # bounded below, separately for throttling and for other errors
)
def sync_tenant(
    self: Any, tenant_id: int, full: bool = False, resume: dict[str, Any] | None = None
) -> str:
    """Sync one tenant. Idempotent: a redelivered or repeated run re-upserts, never
    duplicates, and starts from the committed watermark (or `resume`, a retry's cursor)."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return "gone"
    try:
        run = sync.sync_tenant(tenant=tenant, full=full, task_id=self.request.id, resume=resume)
    except errors.Transient as exc:
        cursor = dict(getattr(exc, "resume", None) or {})
        previous = resume or {}
        if isinstance(exc, errors.Throttled):
            # Wait exactly as long as Microsoft (or our call budget) asks; never sleep here.
            waits = previous.get("throttled", 0) + 1
            countdown = exc.retry_after
            over = waits > settings.SYNC_MAX_THROTTLED_RETRIES
            cursor.update(throttled=waits, failures=previous.get("failures", 0))
        else:
            failures = previous.get("failures", 0) + 1
            base = settings.SYNC_RETRY_BACKOFF_SECONDS * 2 ** (failures - 1)
            countdown = base + random.uniform(0, base)  # noqa: S311 (jitter, not crypto)
            over = failures > settings.SYNC_MAX_RETRIES
            cursor.update(failures=failures, throttled=previous.get("throttled", 0))
        if over:
            sync.give_up(resume=cursor, exc=exc)
            logger.warning("Sync of tenant %s gave up after retries: %s", tenant_id, exc)
            return "failed"
        cursor = sync.pause(tenant_id=tenant_id, resume=cursor, seconds=countdown)
        logger.info("Sync of tenant %s retries in %.1fs: %s", tenant_id, countdown, exc)
        raise self.retry(
            kwargs={"tenant_id": tenant_id, "full": full, "resume": cursor},
            countdown=countdown,
            exc=exc,
        ) from exc
    return run.outcome
