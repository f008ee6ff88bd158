"""Thin Celery tasks: look up arguments, call the plain functions in consent.flow."""

from __future__ import annotations

from celery import shared_task

from partner_portal.consent import flow
from partner_portal.microsoft import errors
from partner_portal.tenants.models import Tenant

# Right after a consent Entra may answer 700016/7000229 for a few minutes while the service
# principal propagates. These waits add up to about 10 minutes before we call it failed.
BACKOFF_SECONDS = (10, 20, 40, 60, 90, 120, 120, 120)
MAX_ATTEMPTS = len(BACKOFF_SECONDS)


def retry_countdown(exc: errors.MicrosoftError, attempt: int) -> int:
    """Seconds before the next attempt: Retry-After for a 429, else the backoff schedule."""
    if isinstance(exc, errors.Throttled):
        return max(1, min(exc.retry_after, 3600))
    return BACKOFF_SECONDS[min(attempt, MAX_ATTEMPTS - 1)]


@shared_task(bind=True, acks_late=True, soft_time_limit=120, time_limit=180)
def verify_tenant_access(self, tenant_id: int, attempt: int = 0) -> str:
    """Confirm a tenant's consent with a real token; retries only what can still succeed."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return "gone"
    try:
        flow.verify_access(tenant=tenant, final=attempt >= MAX_ATTEMPTS)
    except errors.MicrosoftError as exc:
        # verify_access re-raises only what it judged worth retrying (it recorded the rest).
        raise self.retry(
            countdown=retry_countdown(exc, attempt),
            kwargs={"tenant_id": tenant_id, "attempt": attempt + 1},
            max_retries=MAX_ATTEMPTS + 1,
            exc=exc,
        ) from exc
    return tenant.consent_state
