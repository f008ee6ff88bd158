"""Thin Celery tasks: look up arguments, call the plain functions in consent.flow."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from partner_portal.consent import flow
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import Tenant


@shared_task(bind=True, acks_late=True, soft_time_limit=120, time_limit=180)
def verify_tenant_access(
    self: Any,
    tenant_pk: int | None = None,
    attempt: int = 0,
    tenant_id: int | None = None,  # the old name of tenant_pk, for messages still queued
) -> str:
    """Confirm a tenant's consent with a real token; retries only what can still succeed."""
    tenant_pk = tenant_pk if tenant_pk is not None else tenant_id
    tenant = Tenant.objects.filter(pk=tenant_pk).first() if tenant_pk is not None else None
    if tenant is None:
        return "gone"
    try:
        flow.verify_access(tenant=tenant, attempt=attempt)
    except RetryLater as later:
        raise self.retry(
            countdown=later.countdown,
            kwargs={"tenant_pk": tenant_pk, **later.cursor},
            max_retries=flow.MAX_ATTEMPTS + 1,
            exc=later.cause,
        ) from later
    return tenant.consent_state
