"""Sending one delivery, at most once at a time, until it is sent or given up.

1. Claim: a conditional UPDATE moves the delivery from pending (and due) to sending with
   a lease. A duplicate task, a second worker or the sweep finds nothing to claim and stops.
   A worker that dies mid-send leaves its lease to run out; then the sweep's task claims it.
2. Send the message (the same `message_id` on every try).
3. Record the outcome, only while still holding our lease: sent; or pending again with an
   exponential backoff (429, 5xx, timeouts); or failed, for good (a permanent refusal or
   past `give_up_at`), which also marks the channel failing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from partner_portal.alerts import channels
from partner_portal.alerts.dispatch import IMPORT_WAIT, first_sync_done
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600


@dataclass
class Outcome:
    status: str  # sent, retry, failed, skipped (not ours to send), waiting
    retry_in: float | None = None


def claim(*, delivery_id: int, now: datetime) -> datetime | None:
    """The lease's expiry when this worker got the delivery, else None."""
    lease = now + timedelta(seconds=settings.ALERTS_SEND_LEASE_SECONDS)
    claimed = (
        Delivery.objects.filter(pk=delivery_id)
        .filter(
            Q(status=DeliveryStatus.PENDING, due_at__lte=now)
            | Q(status=DeliveryStatus.SENDING, lease_until__lt=now)
        )
        .update(status=DeliveryStatus.SENDING, lease_until=lease, attempts=F("attempts") + 1)
    )
    return lease if claimed == 1 else None


def backoff(attempts: int) -> float:
    base = settings.ALERTS_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    base = min(base, MAX_BACKOFF_SECONDS)
    return base + random.uniform(0, base / 4)  # noqa: S311 (jitter, not crypto)


def deliver(*, delivery_id: int, now: datetime | None = None) -> Outcome:
    now = now or timezone.now()
    lease = claim(delivery_id=delivery_id, now=now)
    if lease is None:
        return Outcome("skipped")
    delivery = Delivery.objects.select_related("channel", "rule", "change", "incident__tenant").get(
        pk=delivery_id
    )
    mine = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.SENDING, lease_until=lease)
    if delivery.is_digest:
        waiting = _digest_not_ready(delivery)
        if waiting is not None:
            mine.update(
                status=DeliveryStatus.PENDING,
                due_at=now + waiting,
                attempts=F("attempts") - 1,
                give_up_at=F("give_up_at") + waiting,
            )
            return Outcome("waiting", waiting.total_seconds())
        if not delivery.folded.exists():  # its changes were delivered before (a re-run)
            mine.delete()
            return Outcome("skipped")
    try:
        message = channels.render(delivery)
        channels.send(
            channel=delivery.channel, message=message, message_id=delivery.message_id, now=now
        )
    except channels.SendFailed as exc:
        return _failed(delivery=delivery, mine=mine, exc=exc, now=now)
    except InvalidToken:
        # Encrypted with another SECRET_KEY: only re-entering the URL can fix it.
        said = "The channel's URL or secret can't be decrypted (SECRET_KEY changed?): re-enter it."
        return _failed(
            delivery=delivery, mine=mine, exc=channels.SendFailed(said, transient=False), now=now
        )
    except Exception as exc:  # a bug: retried like a transient failure, so it ends at give-up
        logger.exception("Delivery %s raised", delivery.pk)
        failure = channels.SendFailed(f"{type(exc).__name__}: {exc}", transient=True)
        return _failed(delivery=delivery, mine=mine, exc=failure, now=now)
    mine.update(status=DeliveryStatus.SENT, sent_at=timezone.now(), lease_until=None, last_error="")
    if delivery.channel.failing_since is not None:
        Channel.objects.filter(pk=delivery.channel_id).update(failing_since=None)
    return Outcome("sent")


def _digest_not_ready(delivery: Delivery) -> timedelta | None:
    """A first sync's digest waits until the sync has read the tenant's whole history."""
    if not delivery.digest_key.startswith("import:"):
        return None
    tenant_pk = int(delivery.digest_key.rsplit(":", 1)[1])
    return None if first_sync_done(tenant_pk) else IMPORT_WAIT


def _failed(*, delivery: Delivery, mine, exc: channels.SendFailed, now: datetime) -> Outcome:
    retry_in = backoff(delivery.attempts)
    if exc.transient and now + timedelta(seconds=retry_in) < delivery.give_up_at:
        mine.update(
            status=DeliveryStatus.PENDING,
            due_at=now + timedelta(seconds=retry_in),
            lease_until=None,
            last_error=exc.message,
        )
        logger.info("Delivery %s failed (%s); retrying in %.0fs", delivery.pk, exc, retry_in)
        return Outcome("retry", retry_in)
    mine.update(status=DeliveryStatus.FAILED, lease_until=None, last_error=exc.message)
    Channel.objects.filter(pk=delivery.channel_id).update(
        failing_since=Coalesce(F("failing_since"), now), last_error=exc.message
    )
    logger.warning("Delivery %s to channel %s failed: %s", delivery.pk, delivery.channel_id, exc)
    return Outcome("failed")
