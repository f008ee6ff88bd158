"""Template tags for the sync status on the tenant page."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import template
from django.conf import settings
from django.utils import timezone

from partner_portal.audit.models import AuditEvent
from partner_portal.incidents import sync
from partner_portal.incidents.models import SyncOutcome, SyncRun
from partner_portal.microsoft import errors
from partner_portal.tenants.models import Tenant

register = template.Library()

FAN_OUT_TASK = "partner_portal.incidents.tasks.sync_all_tenants"
SYNC_REQUESTED = "incidents.sync_requested"
# After "Sync now" the box polls until the run starts; a request older than this that never
# started a run (no worker?) stops the polling.
REQUEST_WAIT = timedelta(minutes=2)
# A run that must be resumed is still "in progress" for the page: keep polling.
LIVE = (SyncOutcome.RUNNING, SyncOutcome.THROTTLED, SyncOutcome.RETRYING)


@register.simple_tag
def sync_state(tenant: Tenant) -> dict[str, Any]:
    """The latest run (live or finished), the last finished one, the error's title and fix,
    and the next scheduled run."""
    # A run whose worker died shows as such once its lease expired, not only when the next
    # scheduled run takes the tenant over (one conditional UPDATE; nothing when alive).
    sync.close_dead_runs(tenant=tenant)
    latest = SyncRun.objects.filter(tenant=tenant).exclude(outcome=SyncOutcome.SKIPPED).first()
    live = latest if latest is not None and latest.outcome in LIVE else None
    finished = (
        latest
        if live is None
        else SyncRun.objects.filter(tenant=tenant)
        .exclude(outcome__in=[*LIVE, SyncOutcome.SKIPPED])
        .first()
    )
    error_class = tenant.last_sync_error_class
    requested = (
        AuditEvent.objects.filter(
            tenant=tenant, action=SYNC_REQUESTED, created_at__gte=timezone.now() - REQUEST_WAIT
        )
        .only("created_at")
        .first()
    )
    waiting = (
        requested is not None
        and live is None
        and (latest is None or latest.started_at < requested.created_at)
    )
    return {
        "live": live,
        "requested": requested if waiting else None,
        "poll": live is not None or waiting,
        "finished": finished,
        "error": errors.describe(error_class) if error_class else None,
        "next_run": next_scheduled_run(),
        "interval_minutes": settings.SYNC_INTERVAL_MINUTES,
    }


@register.filter
def blocked_reason(tenant: Tenant) -> str:
    """Why "Sync now" is unavailable, in words ("" when it is available)."""
    if not tenant.is_active:
        return "The customer is disabled: enable it to sync."
    if not tenant.sync_enabled:
        return "Sync is turned off for this customer (Edit to turn it on)."
    if not tenant.is_syncable:
        return "Not until the customer's consent is confirmed."
    return ""


def next_scheduled_run() -> datetime | None:
    """When beat next fans out (django-celery-beat's PeriodicTask), None if unknown."""
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.filter(task=FAN_OUT_TASK, enabled=True).first()
    if task is None:
        return None
    now = timezone.now()
    last = task.last_run_at or task.date_changed or now
    try:
        remaining: timedelta = task.schedule.remaining_estimate(last)
    except (AttributeError, TypeError, ValueError):
        return None
    return max(now, now + remaining)
