"""Thin Celery tasks over alerts.dispatch and alerts.delivery."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from partner_portal.alerts import delivery, dispatch
from partner_portal.alerts.models import Delivery


@shared_task(ignore_result=True, soft_time_limit=300, time_limit=360)
def dispatch_alerts() -> int:
    """Beat, every ALERTS_DISPATCH_SECONDS: outbox → deliveries, then enqueue what is due
    and what a lost task left behind."""
    # One dispatcher at a time keeps the per-channel cap's count honest; a second run
    # would be harmless otherwise (unique constraints), so a lost lock only costs a cap.
    if not cache.add("alerts:dispatch", 1, timeout=300):
        return 0
    try:
        due = dispatch.dispatch()
        due += dispatch.stale()
        if cache.add("alerts:prune", 1, timeout=600):  # every 10 minutes is plenty
            dispatch.prune()
    finally:
        cache.delete("alerts:dispatch")
    now = timezone.now()
    when = Delivery.objects.filter(pk__in=due).values_list("pk", "due_at")
    for delivery_id, due_at in when:
        # A digest waits for its window to close.
        countdown = max(0.0, (due_at - now).total_seconds())
        deliver.apply_async(kwargs={"delivery_id": delivery_id}, countdown=countdown)
    return len(due)


@shared_task(
    bind=True,
    acks_late=True,
    ignore_result=True,
    max_retries=None,  # bounded by the delivery's give_up_at
    soft_time_limit=settings.ALERTS_SEND_LEASE_SECONDS,
    time_limit=settings.ALERTS_SEND_LEASE_SECONDS + 30,
)
def deliver(self: Any, delivery_id: int) -> str:
    """Send one delivery. Idempotent: a duplicate or late copy finds nothing to claim."""
    outcome = delivery.deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(kwargs={"delivery_id": delivery_id}, countdown=outcome.retry_in)
    return outcome.status
