"""From the sync's outbox to deliveries, as plain functions (the tasks call them).

1. `dispatch` reads outbox rows (`IncidentChange`) not yet dispatched, a batch at a time,
   and for every active rule that matches and every channel of it makes a `Delivery` —
   in one transaction with marking the rows dispatched. The unique constraints make a
   second dispatcher, or a re-run after a crash, add nothing.
2. Not everything is sent one by one: a first sync's history, a digest rule's changes and
   whatever exceeds a channel's per-minute cap are *folded* into one digest delivery per
   (channel, key), sent when its window closes.
3. The caller enqueues the deliveries that are due (after commit). `stale` finds those
   whose task was lost (a worker killed mid-send, a broker restart) for the sweep.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from partner_portal.alerts.access import rule_tenant_pks
from partner_portal.alerts.models import Channel, Delivery, DeliveryStatus, Rule
from partner_portal.incidents.models import IncidentChange, SyncOutcome, SyncRun

BATCH = 500
# The sweep leaves a due delivery this long to the task that was enqueued for it.
SWEEP_GRACE = timedelta(seconds=60)
# A first sync's digest waits this long for the rest of the tenant's pages.
IMPORT_WAIT = timedelta(seconds=30)
# Outbox rows and their deliveries are kept this long (a rule's test looks back 7 days).
KEEP = timedelta(days=30)


def give_up_at(due: datetime) -> datetime:
    return due + timedelta(seconds=settings.ALERTS_GIVE_UP_SECONDS)


def _window(now: datetime, minutes: int) -> tuple[int, datetime]:
    size = minutes * 60
    start = int(now.timestamp()) // size * size
    return start, datetime.fromtimestamp(start + size, tz=now.tzinfo)


class _Fanout:
    """Deliveries for one batch of changes, with the per-channel cap counted as it goes."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.rules = list(Rule.objects.filter(is_active=True).prefetch_related("channels"))
        self.tenants = {rule.pk: rule_tenant_pks(rule) for rule in self.rules}
        self.sent_last_minute: dict[int, int] = {}
        self.digests: dict[tuple[int, str], Delivery] = {}
        self.rows: list[Delivery] = []

    def recent(self, channel: Channel) -> int:
        if channel.pk not in self.sent_last_minute:
            self.sent_last_minute[channel.pk] = Delivery.objects.filter(
                channel=channel,
                digest_key="",
                created_at__gte=self.now - timedelta(minutes=1),
                status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT],
            ).count()
        return self.sent_last_minute[channel.pk]

    def digest(self, *, channel: Channel, rule: Rule | None, key: str, due: datetime) -> Delivery:
        if (channel.pk, key) not in self.digests:
            self.digests[(channel.pk, key)], _ = Delivery.objects.get_or_create(
                channel=channel,
                digest_key=key,
                defaults={
                    "rule": rule,
                    "status": DeliveryStatus.PENDING,
                    "message_id": Delivery.new_message_id(),
                    "due_at": due,
                    "give_up_at": give_up_at(due),
                },
            )
        return self.digests[(channel.pk, key)]

    def add(self, change: IncidentChange) -> None:
        for rule in self.rules:
            if change.tenant_id not in self.tenants[rule.pk] or not rule.matches(change):
                continue
            for channel in rule.channels.all():
                self.rows.append(self.delivery(change, rule, channel))

    def delivery(self, change: IncidentChange, rule: Rule, channel: Channel) -> Delivery:
        row = Delivery(
            rule=rule,
            channel=channel,
            incident_id=change.incident_id,
            version=change.version,
            change=change,
            status=DeliveryStatus.PENDING,
            message_id=Delivery.new_message_id(),
            due_at=self.now,
            give_up_at=give_up_at(self.now),
        )
        digest_rule: Rule | None = rule
        if change.imported:
            key, due = f"import:{rule.pk}:{change.tenant_id}", self.now + IMPORT_WAIT
        elif rule.digest_minutes:
            start, due = _window(self.now, rule.digest_minutes)
            key = f"rule:{rule.pk}:{start}"
        elif self.recent(channel) >= settings.ALERTS_MAX_PER_CHANNEL_PER_MINUTE:
            start, due = _window(self.now, 1)
            key = f"cap:{start}"
            digest_rule = None  # one digest per channel, whichever rules overflowed it
        else:
            self.sent_last_minute[channel.pk] += 1
            return row
        row.status = DeliveryStatus.FOLDED
        row.digest = self.digest(channel=channel, rule=digest_rule, key=key, due=due)
        return row


def dispatch(*, now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Turn undispatched outbox rows into deliveries. Returns the ids of deliveries to
    enqueue (pending; digests included, each with its own due time)."""
    now = now or timezone.now()
    due: list[int] = []
    done = 0
    while limit is None or done < limit:
        with transaction.atomic():
            changes = list(IncidentChange.objects.filter(dispatched_at=None).order_by("pk")[:BATCH])
            if not changes:
                break
            fanout = _Fanout(now)
            for change in changes:
                fanout.add(change)
            Delivery.objects.bulk_create(fanout.rows, ignore_conflicts=True)
            ids = [c.pk for c in changes]
            IncidentChange.objects.filter(pk__in=ids, dispatched_at=None).update(dispatched_at=now)
            due += Delivery.objects.filter(
                change_id__in=ids, status=DeliveryStatus.PENDING
            ).values_list("pk", flat=True)
            due += [d.pk for d in fanout.digests.values() if d.status == DeliveryStatus.PENDING]
        done += len(changes)
    return list(dict.fromkeys(due))


def stale(*, now: datetime | None = None) -> list[int]:
    """Deliveries whose task seems lost: due a while ago and still pending, or held by a
    worker whose lease ran out (it died mid-send). Their due time moves to now, so that a
    backlog (tasks queued, not lost) is handed out again only once per SWEEP_GRACE."""
    now = now or timezone.now()
    ids = list(
        Delivery.objects.filter(
            Q(status=DeliveryStatus.PENDING, due_at__lte=now - SWEEP_GRACE)
            | Q(status=DeliveryStatus.SENDING, lease_until__lt=now)
        )
        .order_by("due_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(due_at=now)
    return ids


def prune(*, now: datetime | None = None, batch: int = 1000) -> int:
    """Forget dispatched outbox rows (and so their deliveries) and digests older than KEEP,
    a batch at a time (Django's cascade loads what it deletes)."""
    cutoff = (now or timezone.now()) - KEEP
    old = IncidentChange.objects.filter(created_at__lt=cutoff, dispatched_at__isnull=False)
    changes, _ = IncidentChange.objects.filter(
        pk__in=list(old.values_list("pk", flat=True)[:batch])
    ).delete()
    digests = Delivery.objects.filter(change=None, created_at__lt=cutoff)
    gone, _ = Delivery.objects.filter(
        pk__in=list(digests.values_list("pk", flat=True)[:batch])
    ).delete()
    return changes + gone


def first_sync_done(tenant_pk: int) -> bool:
    return SyncRun.objects.filter(tenant_id=tenant_pk, outcome=SyncOutcome.SUCCESS).exists()


def would_have_fired(*, rule: Rule, days: int = 7, now: datetime | None = None) -> int:
    """How many changes of the last `days` days this rule matches (first-sync imports
    aside): "would have fired N times"."""
    now = now or timezone.now()
    changes = IncidentChange.objects.filter(
        tenant_id__in=rule_tenant_pks(rule), version__gte=now - timedelta(days=days), imported=False
    ).only("kinds", "after")
    return sum(1 for change in changes.iterator(chunk_size=2000) if rule.matches(change))
