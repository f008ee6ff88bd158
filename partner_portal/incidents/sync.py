"""The incident sync as plain functions: called by the Celery tasks, the management command
and the tests.

One run for one tenant:
1. take the tenant's lease (a conditional UPDATE of `sync_lease_until`); if another run
   holds it, record a `skipped` SyncRun and stop;
2. list incidents changed since `watermark − SYNC_OVERLAP_MINUTES` (everything when `full`),
   newest first, page by page, each page upserted in one transaction (an incident's alerts
   are replaced together);
3. after the last page commits, move the watermark to the newest `lastUpdateTime`
   received — Microsoft's clock, never ours. An incident that changes while we page moves
   to the front of the list, past our cursor; its new `lastUpdateTime` is later than
   anything we received, so the next run's window still holds it;
4. record the outcome on the SyncRun and the tenant, and release the lease.

Microsoft is reached only through the tenant's client (`Tenant.incident_client`), which
owns the token, the one retry after a 401 and the call budget.

The retry policy is here, once: a transient error (429, 5xx, timeout…) leaves the watermark
where it was, keeps the lease, and raises `RetryLater` with a countdown (as long as
Microsoft or our call budget asks for a 429; backoff with jitter otherwise) and a cursor,
so that the caller (the task's retry, the command's sleep) resumes from the next page
instead of starting over. Past `SYNC_MAX_THROTTLED_RETRIES` / `SYNC_MAX_RETRIES` the run
fails and lets go of the tenant. Permanent errors (a second 401, a 403…) are recorded (with
the consent state they imply) and returned as a failed run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from partner_portal.incidents.models import Alert, Incident, Severity, SyncOutcome, SyncRun
from partner_portal.microsoft import defender, errors
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import ConsentState, Tenant

logger = logging.getLogger(__name__)

INCIDENT_FIELDS = [
    "name",
    "severity",
    "severity_rank",
    "status",
    "classification",
    "determination",
    "assigned_to",
    "tags",
    "comments",
    "redirect_incident_id",
    "created_time",
    "last_update_time",
    "portal_url",
    "alert_count",
    "search_text",
    "raw",
    "synced_at",
]

# Permanent errors that say something about the tenant's consent, and the state they imply.
CONSENT_STATE_FOR_ERROR: dict[type[errors.MicrosoftError], str] = {
    errors.ConsentRequired: ConsentState.REVOKED,
    errors.MissingPermissions: ConsentState.MISSING_PERMISSIONS,
    errors.Forbidden: ConsentState.MISSING_PERMISSIONS,
}

Progress = Callable[[SyncRun], None]


def search_text(incident: defender.IncidentData) -> str:
    """Lower-cased incident name, alert titles, device DNS names and user names (account
    names and UPNs), each once, for the dashboard's search box."""
    words: list[Any] = [incident.name]
    for alert in incident.alerts:
        words.append(alert.title)
        for device in alert.devices:
            words.append(device.get("deviceDnsName"))
        for entity in alert.entities:
            words += [entity.get("deviceDnsName"), entity.get("accountName")]
            words.append(entity.get("userPrincipalName"))
            account = entity.get("userAccount")  # Graph's userEvidence
            if isinstance(account, dict):
                words += [account.get("accountName"), account.get("userPrincipalName")]
    seen: dict[str, None] = {}
    for word in words:
        if isinstance(word, str) and word.strip():
            seen.setdefault(word.strip().lower(), None)
    return " ".join(seen)


def store_page(
    *, tenant: Tenant, incidents: list[defender.IncidentData], synced_at: datetime
) -> tuple[int, int]:
    """Upsert one page of incidents and replace their alerts, in one transaction.
    Returns (created, updated)."""
    # The same incident twice in a page (paging shifted under us): keep the newest.
    newest: dict[int, defender.IncidentData] = {}
    for item in incidents:
        known = newest.get(item.incident_id)
        if known is None or item.last_update_time >= known.last_update_time:
            newest[item.incident_id] = item
    if not newest:
        return 0, 0
    with transaction.atomic():
        # A row stored meanwhile from a newer version (an incident action's PATCH answer,
        # a faster run) is not replaced by this older one: lock the rows and skip those.
        stored = dict(
            Incident.objects.select_for_update()
            .filter(tenant=tenant, microsoft_id__in=list(newest))
            .values_list("microsoft_id", "last_update_time")
        )
        newest = {
            key: item
            for key, item in newest.items()
            if key not in stored or item.last_update_time >= stored[key]
        }
        ids = list(newest)
        existing = set(stored) & set(ids)
        rows = [
            Incident(
                tenant=tenant,
                microsoft_id=item.incident_id,
                name=item.name,
                severity=item.severity[:32],
                severity_rank=Severity.rank_of(item.severity),
                status=item.status[:32],
                classification=item.classification[:64],
                determination=item.determination[:64],
                assigned_to=item.assigned_to[:255],
                tags=item.tags,
                comments=item.comments,
                redirect_incident_id=item.redirect_incident_id,
                created_time=item.created_time,
                last_update_time=item.last_update_time,
                portal_url=item.incident_uri[:500],
                alert_count=len({a.alert_id for a in item.alerts}),
                search_text=search_text(item),
                raw=item.raw,
                synced_at=synced_at,
            )
            for item in newest.values()
        ]
        Incident.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["tenant", "microsoft_id"],
            update_fields=INCIDENT_FIELDS,
        )
        pks = dict(
            Incident.objects.filter(tenant=tenant, microsoft_id__in=ids).values_list(
                "microsoft_id", "pk"
            )
        )
        Alert.objects.filter(incident_id__in=pks.values()).delete()
        alerts: dict[tuple[int, str], Alert] = {}
        for item in newest.values():
            for a in item.alerts:
                alerts[(pks[item.incident_id], a.alert_id)] = Alert(
                    incident_id=pks[item.incident_id],
                    microsoft_id=a.alert_id[:200],
                    title=a.title,
                    description=a.description,
                    severity=a.severity[:32],
                    category=a.category[:64],
                    status=a.status[:32],
                    detection_source=a.detection_source[:64],
                    service_source=a.service_source[:64],
                    mitre_techniques=a.mitre_techniques,
                    first_activity=a.first_activity,
                    last_activity=a.last_activity,
                    devices=a.devices,
                    entities=a.entities,
                    raw=a.raw,
                )
        Alert.objects.bulk_create(alerts.values(), batch_size=500)
    created = len(set(ids) - existing)
    return created, len(ids) - created


def _window_start(tenant: Tenant, full: bool) -> datetime | None:
    if full or tenant.incidents_watermark is None:
        return None
    return tenant.incidents_watermark - timedelta(minutes=settings.SYNC_OVERLAP_MINUTES)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def sync_tenant(
    *,
    tenant: Tenant,
    full: bool = False,
    task_id: str = "",
    resume: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> SyncRun:
    """Sync one tenant's incidents (see the module docstring). Returns the SyncRun.

    Raises `RetryLater` when a transient error interrupted it and retries remain: call
    again after `countdown` seconds with `resume=cursor`.
    """
    now = timezone.now()
    resume = resume or {}
    run = _run_for(tenant=tenant, full=full, task_id=task_id, resume=resume, now=now)
    lease = tenant.take_sync_lease(now=now, held=_parse(resume.get("lease")))
    if lease is None:
        run.outcome = SyncOutcome.SKIPPED
        run.finished_at = timezone.now()
        run.error_message = "Another sync of this tenant is running."
        run.save()
        return run
    # Runs still marked running lost their worker (SIGKILL, a machine gone): we hold the
    # lease now, so they cannot be alive.
    SyncRun.objects.filter(tenant=tenant, outcome=SyncOutcome.RUNNING).exclude(pk=run.pk).update(
        outcome=SyncOutcome.FAILED,
        finished_at=now,
        error_class="WorkerLost",
        error_message="The worker running this sync stopped; a later run took over.",
    )
    held_for_retry = False
    try:
        tenant.refresh_from_db()
        return _run(tenant=tenant, run=run, resume=resume, lease=lease, progress=progress)
    except RetryLater:
        held_for_retry = True  # `_retry_later` kept the lease over the countdown
        raise
    finally:
        if not held_for_retry:
            tenant.release_sync_lease(lease=lease)


def _run_for(
    *, tenant: Tenant, full: bool, task_id: str, resume: dict[str, Any] | None, now: datetime
) -> SyncRun:
    """The SyncRun to write to: the interrupted one when resuming, else a new one."""
    if resume and resume.get("run_id"):
        run = SyncRun.objects.filter(pk=resume["run_id"], tenant=tenant).first()
        if run is not None:
            run.outcome = SyncOutcome.RUNNING
            run.task_id = task_id or run.task_id
            run.save(update_fields=["outcome", "task_id"])
            return run
    return SyncRun.objects.create(
        tenant=tenant,
        started_at=now,
        full=full,
        watermark_before=tenant.incidents_watermark,
        task_id=task_id,
    )


def _run(
    *,
    tenant: Tenant,
    run: SyncRun,
    resume: dict[str, Any],
    lease: datetime,
    progress: Progress | None,
) -> SyncRun:
    since = _parse(resume["since"]) if "since" in resume else _window_start(tenant, run.full)
    newest = _parse(resume.get("newest"))
    cursor: dict[str, Any] = {
        "run_id": run.pk,
        "since": _iso(since),
        "newest": _iso(newest),
        "next_url": resume.get("next_url"),
        "next_skip": resume.get("next_skip", 0),
        "page": resume.get("page", 1),
        "lease": _iso(lease),
        "throttled": resume.get("throttled", 0),
        "failures": resume.get("failures", 0),
    }
    try:
        client = tenant.incident_client()
    except errors.MicrosoftError as exc:  # no Entra tenant ID (yet)
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        return run
    calls_before = run.api_calls
    try:
        pages = client.incident_pages(
            since=since,
            start_url=cursor["next_url"],
            start_skip=cursor["next_skip"],
            first_page_number=cursor["page"],
        )
        for page in pages:
            created, updated = store_page(
                tenant=tenant, incidents=page.incidents, synced_at=timezone.now()
            )
            for item in page.incidents:
                if newest is None or item.last_update_time > newest:
                    newest = item.last_update_time
            cursor.update(
                newest=_iso(newest),
                next_url=page.next_url,
                next_skip=page.next_skip or 0,
                page=page.number + 1,
            )
            run.pages += 1
            run.api_calls = calls_before + client.api_calls
            run.created_count += created
            run.updated_count += updated
            run.save(update_fields=["pages", "api_calls", "created_count", "updated_count"])
            if progress:
                progress(run)
    except errors.MicrosoftError as exc:
        run.api_calls = calls_before + client.api_calls
        if isinstance(exc, errors.Transient):
            return _retry_later(tenant=tenant, run=run, exc=exc, cursor=cursor)
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        _record_consent_error(tenant=tenant, exc=exc)
        return run
    except BaseException as exc:  # a bug or a time limit: record it, then let it propagate
        run.api_calls = calls_before + client.api_calls
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        raise
    return _succeeded(tenant=tenant, run=run, newest=newest)


def _retry_later(
    *, tenant: Tenant, run: SyncRun, exc: errors.Transient, cursor: dict[str, Any]
) -> SyncRun:
    """The retry policy: raise RetryLater, or fail the run once retries are used up."""
    if isinstance(exc, errors.Throttled):
        # Wait exactly as long as Microsoft (or our call budget) asks.
        run.throttled_waits += 1
        cursor["throttled"] += 1
        countdown = float(exc.retry_after)
        over = cursor["throttled"] > settings.SYNC_MAX_THROTTLED_RETRIES
        outcome = SyncOutcome.THROTTLED
    else:
        cursor["failures"] += 1
        base = settings.SYNC_RETRY_BACKOFF_SECONDS * 2 ** (cursor["failures"] - 1)
        countdown = base + random.uniform(0, base)  # noqa: S311 (jitter, not crypto)
        over = cursor["failures"] > settings.SYNC_MAX_RETRIES
        outcome = SyncOutcome.RETRYING
    if over:
        # The next scheduled run starts again from the committed watermark.
        logger.warning("Sync of tenant %s gave up after retries: %s", tenant.pk, exc)
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        return run
    _finish(tenant=tenant, run=run, outcome=outcome, exc=exc)
    lease = tenant.hold_lease_for_retry(lease=_parse(cursor["lease"]), seconds=countdown)
    cursor["lease"] = _iso(lease)
    logger.info("Sync of tenant %s retries in %.1fs: %s", tenant.pk, countdown, exc)
    raise RetryLater(countdown, cursor, cause=exc)


def _succeeded(*, tenant: Tenant, run: SyncRun, newest: datetime | None) -> SyncRun:
    """After the last page committed: advance the watermark (never backwards)."""
    if newest is not None:
        tenant.advance_watermark(newest)
    run.watermark_after = tenant.incidents_watermark
    _finish(tenant=tenant, run=run, outcome=SyncOutcome.SUCCESS)
    return run


def _finish(
    *, tenant: Tenant, run: SyncRun, outcome: str, exc: BaseException | None = None
) -> None:
    now = timezone.now()
    run.outcome = outcome
    run.finished_at = now
    run.error_class = type(exc).__name__[:64] if exc else ""
    run.error_message = _message(exc) if exc else ""
    run.save()
    tenant.record_sync_outcome(
        outcome=outcome,
        at=now,
        error_class=run.error_class,
        error_message=run.error_message,
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, errors.MicrosoftError):
        return exc.message
    return str(exc)[:1000] or type(exc).__name__


def _record_consent_error(*, tenant: Tenant, exc: errors.MicrosoftError) -> None:
    """What a permanent error says about consent, on the tenant (no retry until fixed)."""
    state = CONSENT_STATE_FOR_ERROR.get(type(exc))
    if state is None and not isinstance(exc, errors.CredentialInvalid):
        # Not about consent or our credentials (e.g. a bad answer): the SyncRun says it.
        return
    tenant.record_consent_error(error_class=exc.kind, error_message=exc.message, state=state)


def sync_due_tenants() -> list[int]:
    """The primary keys of the tenants the scheduled sync should run for: syncable, and not
    held by a run (running, or waiting out a retry's countdown)."""
    due = Tenant.objects.syncable().lease_free(timezone.now())
    return list(due.order_by("pk").values_list("pk", flat=True))
