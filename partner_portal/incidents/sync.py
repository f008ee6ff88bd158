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

A transient error (429, 5xx, timeout…) leaves the watermark where it was and re-raises
with a `resume` cursor attached (`exc.resume`), so the task retries from the next page
instead of starting over. A 401 is first retried once with a new token (a token revoked or
expired on the way says nothing about consent). Permanent errors (a second 401, a 403…) are
recorded (with the consent state they imply) and returned as a failed run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from partner_portal.incidents import budget
from partner_portal.incidents.models import (
    Alert,
    Incident,
    SyncOutcome,
    SyncProblem,
    SyncRun,
    id_hash,
)
from partner_portal.microsoft import clouds, defender, errors, http, vocabulary
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
    "text_repaired",
    "synced_at",
]

# Permanent errors that say something about the tenant's consent, and the state they imply.
CONSENT_STATE_FOR_ERROR: dict[type[errors.MicrosoftError], str] = {
    errors.ConsentRequired: ConsentState.REVOKED,
    errors.MissingPermissions: ConsentState.MISSING_PERMISSIONS,
    errors.Forbidden: ConsentState.MISSING_PERMISSIONS,
}

Progress = Callable[[SyncRun], None]


def lease_seconds() -> int:
    """How long a run holds its tenant: longer than the task's hard time limit, so a lease
    outlives any run that is still alive, and expires on its own after a crash."""
    return settings.SYNC_LEASE_SECONDS


def search_text(incident: defender.IncidentData) -> str:
    """Lower-cased incident name, alert titles, device DNS names and user names (account
    names and UPNs), each once, for the dashboard's search box."""
    words: list[str] = [incident.name]
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


@dataclass(frozen=True)
class Stored:
    """What storing one page did: incidents created and updated, and items recorded as sync
    problems (those that could not be parsed, plus those the database refused)."""

    created: int
    updated: int
    problems: int


def store_page(
    *, tenant: Tenant, incidents: list[defender.IncidentData], synced_at: datetime
) -> tuple[int, int]:
    """Upsert one page of incidents and replace their alerts. Returns (created, updated);
    an incident the database refuses becomes a sync problem (see `store_items`)."""
    stored = store_items(tenant=tenant, incidents=incidents, synced_at=synced_at)
    return stored.created, stored.updated


def store_items(
    *,
    tenant: Tenant,
    incidents: list[defender.IncidentData],
    synced_at: datetime,
    problems: Sequence[defender.ItemProblem] = (),
) -> Stored:
    """Store a page item by item, without paying for it when nothing is wrong:

    1. the whole page in one transaction (the fast path: a few queries for 100 incidents);
    2. if the database refuses it, each incident in its own savepoint, so that one poison
       incident cannot block the others;
    3. each incident it still refuses, and each item of `problems` (could not be parsed),
       is recorded as a `SyncProblem`; an incident stored clears its problem.
    """
    # The same incident twice in a page (paging shifted under us): keep the newest.
    newest: dict[int, defender.IncidentData] = {}
    for item in incidents:
        known = newest.get(item.incident_id)
        if known is None or item.last_update_time >= known.last_update_time:
            newest[item.incident_id] = item
    refused: list[defender.ItemProblem] = []
    try:
        with transaction.atomic():
            created, updated = _upsert(tenant, list(newest.values()), synced_at)
    except Exception:  # whatever one item does to the database, find which one below
        logger.info("Tenant %s: a page was refused; storing it item by item", tenant.pk)
        created = updated = 0
        for item in newest.values():
            try:
                with transaction.atomic():
                    c, u = _upsert(tenant, [item], synced_at)
            except Exception as exc:
                refused.append(_refused(item, exc))
                continue
            created, updated = created + c, updated + u
    failed = {p.incident_id for p in refused}
    stored_keys = {problem_key(str(i)) for i in newest if str(i) not in failed}
    if stored_keys:
        SyncProblem.objects.filter(tenant=tenant, key__in=stored_keys).delete()
    for problem in [*problems, *refused]:
        record_problem(tenant=tenant, problem=problem, now=synced_at)
    return Stored(created, updated, len(problems) + len(refused))


def _upsert(
    tenant: Tenant, items: list[defender.IncidentData], synced_at: datetime
) -> tuple[int, int]:
    """Upsert incidents and replace their alerts (callers hold a transaction)."""
    if not items:
        return 0, 0
    ids = [item.incident_id for item in items]
    rows = [
        Incident(
            tenant=tenant,
            microsoft_id=item.incident_id,
            name=item.name,
            severity=item.severity,
            severity_rank=vocabulary.severity_rank(item.severity),
            status=item.status,
            classification=item.classification,
            determination=item.determination,
            assigned_to=item.assigned_to,
            tags=item.tags,
            comments=item.comments,
            redirect_incident_id=item.redirect_incident_id,
            created_time=item.created_time,
            last_update_time=item.last_update_time,
            portal_url=item.incident_uri,
            alert_count=len({a.alert_id for a in item.alerts}),
            search_text=search_text(item),
            raw=item.raw,
            text_repaired=item.text_repaired,
            synced_at=synced_at,
        )
        for item in items
    ]
    existing = set(
        Incident.objects.filter(tenant=tenant, microsoft_id__in=ids).values_list(
            "microsoft_id", flat=True
        )
    )
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
    for item in items:
        for a in item.alerts:
            alerts[(pks[item.incident_id], a.alert_id)] = Alert(
                incident_id=pks[item.incident_id],
                microsoft_id=a.alert_id,
                microsoft_id_hash=id_hash(a.alert_id),
                title=a.title,
                description=a.description,
                severity=a.severity,
                category=a.category,
                status=a.status,
                detection_source=a.detection_source,
                service_source=a.service_source,
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


def _refused(item: defender.IncidentData, exc: Exception) -> defender.ItemProblem:
    logger.warning("Tenant incident %s could not be stored: %s", item.incident_id, type(exc))
    raw = {**item.raw, "alerts": [a.raw for a in item.alerts]}
    error = f"{type(exc).__name__}: {exc}"
    return defender.ItemProblem(
        incident_id=str(item.incident_id),
        error=defender.repair_text(error)[0][:2000],
        raw_text=json.dumps(raw, ensure_ascii=True, default=str),
        last_update_time=item.last_update_time,
    )


def problem_key(incident_id: str, raw_text: str = "") -> str:
    """One problem per incident ID (its number, however it was spelt), or per raw item when
    there is no ID."""
    text = incident_id.strip()
    if text.isdigit():
        text = str(int(text))
    return id_hash(text) if text else id_hash("raw:" + raw_text)


def record_problem(*, tenant: Tenant, problem: defender.ItemProblem, now: datetime) -> None:
    """Insert or refresh (last seen, count, error, raw text) the tenant's problem record."""
    key = problem_key(problem.incident_id, problem.raw_text)
    fields = {"error": problem.error, "raw_text": problem.raw_text, "last_seen": now}
    for _ in range(2):  # a concurrent insert of the same key: update theirs
        if SyncProblem.objects.filter(tenant=tenant, key=key).update(
            count=F("count") + 1, **fields
        ):
            return
        try:
            with transaction.atomic():
                SyncProblem.objects.create(
                    tenant=tenant,
                    key=key,
                    microsoft_id=problem.incident_id,
                    first_seen=now,
                    **fields,
                )
            return
        except IntegrityError:
            continue


def take_lease(*, tenant: Tenant, now: datetime, held: datetime | None = None) -> datetime | None:
    """The lease's expiry when we got it, None when another run holds the tenant.

    `held` is the expiry of a lease this run already holds (kept over a retry's countdown,
    see `pause`): taking it again is allowed, to nobody else until it expires.
    """
    until = now + timedelta(seconds=lease_seconds())
    free = Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now)
    if held is not None:
        free |= Q(sync_lease_until=held)
    taken = Tenant.objects.filter(pk=tenant.pk).filter(free).update(sync_lease_until=until)
    return until if taken == 1 else None


def release_lease(*, tenant_id: int, until: datetime | None) -> None:
    # Only our own lease: if ours expired and another run took the tenant, leave theirs.
    if until is not None:
        Tenant.objects.filter(pk=tenant_id, sync_lease_until=until).update(sync_lease_until=None)


def pause(*, tenant_id: int, resume: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Keep an interrupted run's lease over its retry countdown (plus a normal lease, so
    that it expires on its own if the retry never comes), so that no scheduled run starts
    over from the watermark meanwhile and spends the same call budget. Returns the cursor
    to retry with."""
    held = _parse(resume.get("lease"))
    if held is None:
        return resume
    until = timezone.now() + timedelta(seconds=seconds + lease_seconds())
    kept = Tenant.objects.filter(pk=tenant_id, sync_lease_until=held).update(sync_lease_until=until)
    return {**resume, "lease": _iso(until) if kept else None}


def _token_provider(tenant: Tenant) -> defender.TokenProvider:
    from partner_portal.microsoft import tokens

    tenant_id = str(tenant.entra_tenant_id)

    def provide() -> str:
        return tokens.get_access_token(tenant_id=tenant_id, cloud=tenant.cloud)

    return provide


def _token_rejected(tenant: Tenant) -> defender.TokenRejected:
    """What a 401 from the API does: drop the tenant's token everywhere, so that the one
    retry of the request (see `defender._request`) goes with a new token. Only a second 401
    is `Forbidden` and marks the tenant `missing_permissions`."""
    from partner_portal.microsoft import tokens

    tenant_id = str(tenant.entra_tenant_id)

    def drop() -> None:
        logger.info("Defender refused tenant %s's token (401): retrying with a new one", tenant.pk)
        tokens.forget_tenant(tenant_id=tenant_id, cloud=tenant.cloud, drop_cached_tokens=True)

    return drop


def _base_url(tenant: Tenant) -> str:
    cloud = clouds.get_cloud(tenant.cloud, defender_base_url=settings.MICROSOFT_DEFENDER_BASE_URL)
    return cloud.defender_base_url


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

    Raises `errors.Transient` (Throttled included) with `exc.resume` and `exc.sync_run_id`
    set, for the caller to retry later with `resume=exc.resume`.
    """
    now = timezone.now()
    resume = resume or {}
    run = _run_for(tenant=tenant, full=full, task_id=task_id, resume=resume, now=now)
    lease = take_lease(tenant=tenant, now=now, held=_parse(resume.get("lease")))
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
    keep_lease = False
    try:
        tenant.refresh_from_db()
        return _run(tenant=tenant, run=run, resume=resume, progress=progress)
    except errors.Transient as exc:
        cursor = getattr(exc, "resume", None)
        if cursor is not None:
            # The caller retries from the cursor: it keeps the lease meanwhile (`pause`).
            cursor["lease"] = _iso(lease)
            keep_lease = True
        raise
    finally:
        if not keep_lease:
            release_lease(tenant_id=tenant.pk, until=lease)


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
    *, tenant: Tenant, run: SyncRun, resume: dict[str, Any], progress: Progress | None
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
    }

    def before_call() -> None:
        try:
            budget.take(tenant_id=str(tenant.entra_tenant_id), app_id=settings.MICROSOFT_CLIENT_ID)
        except errors.Throttled:
            raise
        except Exception:  # the cache (Redis) is down: Microsoft's own 429s still protect us
            logger.warning("Call budget unavailable; calling without it", exc_info=True)
        run.api_calls += 1

    try:
        pages = defender.iter_incident_pages(
            base_url=_base_url(tenant),
            token_provider=_token_provider(tenant),
            token_rejected=_token_rejected(tenant),
            session=http.new_session(
                timeout=settings.MICROSOFT_HTTP_TIMEOUT, ca_bundle=settings.MICROSOFT_CA_BUNDLE
            ),
            since=since,
            start_url=cursor["next_url"],
            start_skip=cursor["next_skip"],
            first_page_number=cursor["page"],
            before_call=before_call,
        )
        for page in pages:
            stored = store_items(
                tenant=tenant,
                incidents=page.incidents,
                synced_at=timezone.now(),
                problems=page.problems,
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
            run.created_count += stored.created
            run.updated_count += stored.updated
            run.problems += stored.problems
            run.save(
                update_fields=["pages", "api_calls", "created_count", "updated_count", "problems"]
            )
            if progress:
                progress(run)
    except errors.MicrosoftError as exc:
        return _interrupted(tenant=tenant, run=run, exc=exc, cursor=cursor)
    except BaseException as exc:  # a bug or a time limit: record it, then let it propagate
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        raise
    return _succeeded(tenant=tenant, run=run, newest=newest)


def _succeeded(*, tenant: Tenant, run: SyncRun, newest: datetime | None) -> SyncRun:
    """After the last page committed: advance the watermark (never backwards)."""
    if newest is not None:
        # Conditional, so that it never moves backwards (a slower run finishing late).
        Tenant.objects.filter(pk=tenant.pk).filter(
            Q(incidents_watermark__isnull=True) | Q(incidents_watermark__lt=newest)
        ).update(incidents_watermark=newest)
    tenant.refresh_from_db(fields=["incidents_watermark"])
    run.watermark_after = tenant.incidents_watermark
    _finish(tenant=tenant, run=run, outcome=SyncOutcome.SUCCESS)
    return run


def _interrupted(
    *, tenant: Tenant, run: SyncRun, exc: errors.MicrosoftError, cursor: dict[str, Any]
) -> SyncRun:
    if isinstance(exc, errors.Throttled):
        run.throttled_waits += 1
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.THROTTLED, exc=exc)
    elif isinstance(exc, errors.Transient):
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.RETRYING, exc=exc)
    else:
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        _record_consent_error(tenant=tenant, exc=exc)
        return run
    exc.resume = cursor  # type: ignore[attr-defined]
    exc.sync_run_id = run.pk  # type: ignore[attr-defined]
    raise exc


def _finish(
    *, tenant: Tenant, run: SyncRun, outcome: str, exc: BaseException | None = None
) -> None:
    now = timezone.now()
    run.outcome = outcome
    run.finished_at = now
    run.error_class = type(exc).__name__[:64] if exc else ""
    run.error_message = _message(exc) if exc else ""
    run.save()
    Tenant.objects.filter(pk=tenant.pk).update(
        last_sync_at=now,
        last_sync_outcome=outcome,
        last_sync_error_class=run.error_class,
        last_sync_error_message=run.error_message,
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, errors.MicrosoftError):
        return exc.message
    return str(exc)[:1000] or type(exc).__name__


def _record_consent_error(*, tenant: Tenant, exc: errors.MicrosoftError) -> None:
    """What a permanent error says about consent, on the tenant (no retry until fixed)."""
    fields: dict[str, Any] = {
        "consent_error_class": exc.kind,
        "consent_error_message": exc.message,
        "consent_checked_at": timezone.now(),
    }
    state = CONSENT_STATE_FOR_ERROR.get(type(exc))
    if state is not None:
        fields["consent_state"] = state
    elif not isinstance(exc, errors.CredentialInvalid):
        # Not about consent or our credentials (e.g. a bad answer): the SyncRun says it.
        return
    Tenant.objects.filter(pk=tenant.pk).update(**fields)


def give_up(*, resume: dict[str, Any], exc: errors.MicrosoftError) -> None:
    """A transient error that outlasted every retry: the run failed and lets go of the
    tenant (the next scheduled run starts again from the committed watermark)."""
    run = SyncRun.objects.select_related("tenant").filter(pk=resume.get("run_id")).first()
    if run is not None:
        _finish(tenant=run.tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc)
        release_lease(tenant_id=run.tenant_id, until=_parse(resume.get("lease")))


def sync_due_tenants() -> list[int]:
    """The ids of tenants the scheduled sync should run for: enabled and consented, and not
    held by a run (running, or waiting out a retry's countdown)."""
    now = timezone.now()
    return list(
        Tenant.objects.filter(
            is_active=True,
            sync_enabled=True,
            entra_tenant_id__isnull=False,
            consent_state=ConsentState.CONSENTED,
        )
        .filter(Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
