"""The incident sync as plain functions: called by the Celery tasks, the management command
and the tests.

One run for one tenant:
1. take the tenant's lease (a conditional UPDATE of `sync_lease_until`); if another run
   holds it, record a `skipped` SyncRun and stop;
2. list incidents changed since the watermark, and a little before it as far as the pages
   have room (`_window_start`; everything when `full`; further back when Microsoft's clock
   turns out to have stepped back), newest first, page by page, each page upserted in one
   transaction (an incident's alerts with it);
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

import functools
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from partner_portal import raw_sql
from partner_portal.incidents import lease_keeper
from partner_portal.incidents.models import (
    Incident,
    SyncOutcome,
    SyncProblem,
    SyncRun,
)
from partner_portal.incidents.read_ahead import read_ahead
from partner_portal.incidents.store import LeaseLost, record_problem, store_fenced_page, store_items
from partner_portal.microsoft import defender, errors
from partner_portal.microsoft.client import GRAPH_PAGE_SIZE, PAGE_SIZE, IncidentClient
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import ConsentState, Tenant, row_columns

logger = logging.getLogger(__name__)

# Permanent errors that say something about the tenant's consent, and the state they imply.
CONSENT_STATE_FOR_ERROR: dict[type[errors.MicrosoftError], str] = {
    errors.ConsentRequired: ConsentState.REVOKED,
    errors.MissingPermissions: ConsentState.MISSING_PERMISSIONS,
    errors.Forbidden: ConsentState.MISSING_PERMISSIONS,
}

Progress = Callable[[SyncRun], None]

# A run fetches at most this many problem incidents again (Defender allows 100 GETs/min).
PROBLEM_RETRIES_PER_RUN = 20
# How far ahead of our clock a lastUpdateTime may be and still move the watermark.
WATERMARK_SKEW = timedelta(hours=1)
# Microsoft's clock behind a sync's window by more than this is a step back (`_pages`), and
# the window re-read starts this much before the earliest possible change (Date headers
# have whole seconds; Microsoft's front ends and stores need not agree to the second).
CLOCK_STEP_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class History:
    """What earlier runs left that this run needs, read with the tenant as its lease is taken
    (`_history_sql`)."""

    had_problems: bool = True  # sync problems to retry
    last_success_at: datetime | None = None  # when the latest successful run started
    # Where the latest successful incremental run started its window (its watermark_before).
    previous_watermark: datetime | None = None
    # How many incidents changed since then (up to ten pages): what the window's pages hold.
    changed_since_previous: int = 0
    # At least as many incidents as are stored in the overlap up to the watermark (up to a
    # page): when the room holds them, the window starts at the overlap's start (no lookup).
    in_overlap: int = PAGE_SIZE


def _window_start(tenant: Tenant, full: bool, history: History) -> datetime | None:
    """Where the listing starts (`lastUpdateTime ge` it; None: everything).

    Just after the watermark, and below it only as far as the pages this run needs anyway
    have room: for changes Microsoft indexed late, which appear behind changes already
    listed (or at the watermark's own instant). The room is what the changes the previous
    run brought leave of their pages, less a margin; it is filled with the incidents stored
    at and just before the watermark (the listing brings those at its instant again), at
    most SYNC_OVERLAP_MINUTES back. A quiet tenant re-reads its whole overlap in its one
    call, a busy one what is free; neither pays a call for it. What was indexed later than
    that is repaired by the reconciliation pass (`reconcile_due`).
    """
    watermark = tenant.incidents_watermark
    if full or watermark is None:
        return None
    try:
        earliest = watermark - timedelta(minutes=settings.SYNC_OVERLAP_MINUTES)
    except OverflowError:  # a watermark in year 1: everything is after it
        return None
    room = _page_room(tenant, history.changed_since_previous)
    if room >= history.in_overlap:  # a quiet tenant: its whole overlap fits
        return earliest
    if room <= 0:
        # Strictly after the watermark: what shares its instant was received with it (many
        # changes of one bulk edit can), unless indexed late. (Microsoft's 7th digit is
        # dropped on parsing, so the watermark is at most 1 µs behind the instant.)
        return watermark + timedelta(microseconds=1)
    # Just after the newest incident the room cannot take (the room+1-th from the watermark,
    # itself included), if it is within the overlap. Not at the room-th: many incidents can
    # share its instant (a bulk edit, a minute's changes stamped at once), and the listing
    # would bring them all, and those at the watermark, into a second page.
    updated = Incident._meta.get_field("last_update_time")
    prepared = [updated.get_db_prep_value(v, connection) for v in (watermark, earliest)]
    with raw_sql.cursor() as cursor:
        cursor.execute(_incidents_sql(), [tenant.pk, *prepared, room])
        row = cursor.fetchone()
    if row is None:
        return earliest
    return raw_sql.from_db([updated], row)[0] + timedelta(microseconds=1)


def _page_room(tenant: Tenant, changed: int) -> int:
    """How many incidents at or below the watermark this run's pages can take without one more
    call: the pages the changes since the previous incremental run's start would fill (as
    many are expected now), less those changes and a margin for a busier minute."""
    size = GRAPH_PAGE_SIZE if tenant.source == "graph" else PAGE_SIZE
    pages = max(1, -(-changed // size))
    return pages * size - changed - size // 5


@functools.cache
def _incidents_sql() -> str:
    """`_window_start`'s query (the newest stored in [earliest, watermark], skipping some), in
    raw SQL built once (through the ORM its building cost more than running it)."""
    incidents, updated = raw_sql.table(Incident), raw_sql.column(Incident, "last_update_time")
    tenant = raw_sql.column(Incident, "tenant")
    return (
        f"SELECT {updated} FROM {incidents} WHERE {tenant} = %s AND {updated} <= %s "  # noqa: S608
        f"AND {updated} >= %s ORDER BY {updated} DESC LIMIT 1 OFFSET %s"
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


UNFINISHED = (SyncOutcome.RUNNING, SyncOutcome.RETRYING, SyncOutcome.THROTTLED)


def sync_tenant(
    *,
    tenant: Tenant,
    full: bool = False,
    task_id: str = "",
    resume: dict[str, Any] | None = None,
    progress: Progress | None = None,
    follow_up_if_busy: bool = False,
    reconcile: bool = False,
) -> SyncRun:
    """Sync one tenant's incidents (see the module docstring). Returns the SyncRun.

    Raises `RetryLater` when a transient error interrupted it and retries remain: call
    again after `countdown` seconds with `resume=cursor`.

    A resumed run whose lease or SyncRun is no longer its own (a second copy of the retry
    message, or one arriving after the scheduler took the tenant over) returns that SyncRun
    untouched: history is never rewritten. When the tenant is busy and `follow_up_if_busy`
    (someone pressed "Sync now"), one follow-up run is queued for when the running one ends
    instead of a skipped one (an unsaved SyncRun says so).
    """
    now = timezone.now()
    resume = resume or {}
    began: tuple[str, SyncRun] | SyncRun | None = None
    free_tried = not resume and connection.vendor == "postgresql"
    if free_tried:
        began = _begin(tenant, now=now, full=full, reconcile=reconcile, task_id=task_id)
    if began is None:
        began = _open(
            tenant=tenant,
            now=now,
            full=full,
            reconcile=reconcile,
            task_id=task_id,
            resume=resume,
            follow_up_if_busy=follow_up_if_busy,
            free_tried=free_tried,
        )
    if isinstance(began, SyncRun):
        return began
    token, run = began
    held_for_retry = False
    try:
        history = _history(*tenant.lease_read) if tenant.lease_read else _read_again(tenant)
        with lease_keeper.held(tenant.pk, token):
            return _run(
                tenant=tenant,
                run=run,
                resume=resume,
                token=token,
                progress=progress,
                history=history,
            )
    except RetryLater:
        held_for_retry = True  # `_retry_later` kept the lease over the countdown
        raise
    finally:
        # Ending the run released it (`_finish`), unless the run ended in a way it did not see.
        if not held_for_retry and tenant.sync_lease_token == token:
            tenant.release_sync_lease(token=token)


def _open(
    *,
    tenant: Tenant,
    now: datetime,
    full: bool,
    reconcile: bool,
    task_id: str,
    resume: dict[str, Any],
    follow_up_if_busy: bool,
    free_tried: bool,
) -> tuple[str, SyncRun] | SyncRun:
    """The lease and the SyncRun of a run (`sync_tenant`), or the SyncRun to return instead:
    a skipped run, a follow-up's, a finished one a late retry found. `free_tried`: `_begin`
    found the lease not free as a release leaves it (no need to try that again)."""
    held = resume.get("lease_token") or ""
    token = tenant.take_sync_lease(
        now=now, held=held, read=_history_read(tenant), free_tried=free_tried
    )
    if token is None and follow_up_if_busy and not resume.get("run_id"):
        # Follow the run that holds the tenant, or be the run if that one ended meanwhile (and
        # another may have begun: a few tries, then this one is skipped).
        for _ in range(3):
            if tenant.request_follow_up_sync(full=full, now=timezone.now()):
                return _follow_up_requested(tenant=tenant, full=full)
            token = tenant.take_sync_lease(now=timezone.now(), read=_history_read(tenant))
            if token is not None:
                break
    if token is None:
        return _not_taken(tenant=tenant, full=full, resume=resume)
    try:
        run = _run_for(
            tenant=tenant, full=full or reconcile, task_id=task_id, resume=resume, now=now
        )
        if reconcile and not run.reconcile and run.outcome == SyncOutcome.RUNNING:
            run.reconcile = True
            run.save(update_fields=["reconcile"])
    except BaseException:
        tenant.release_sync_lease(token=token)
        raise
    if run.outcome != SyncOutcome.RUNNING:  # a late or duplicated retry of a finished run
        tenant.release_sync_lease(token=token)
        return run
    if tenant.took_over_lease:
        _close_abandoned_runs(tenant=tenant, keep=run, now=now)
    return token, run


def _begin(
    tenant: Tenant, *, now: datetime, full: bool, reconcile: bool, task_id: str
) -> tuple[str, SyncRun] | None:
    """A run's usual start in one statement, on PostgreSQL: the lease taken as the last run
    left it, the tenant and its history read back (`Tenant.take_sync_lease`), and the run's
    SyncRun inserted with the watermark it starts from. None when the lease was not free
    that way, or elsewhere: `_open` then does it step by step."""
    if connection.vendor != "postgresql":
        return None
    token, (lease, lease_params) = tenant.free_lease_statement(now)
    history, history_params = _history_read(tenant)
    run = SyncRun(
        tenant=tenant, started_at=now, full=full or reconcile, reconcile=reconcile, task_id=task_id
    )
    sources, params = [], []
    for field in _run_fields():
        if field.attname == "tenant_id":
            sources.append(f"lease.{raw_sql.column(Tenant, 'id')}")
        elif field.attname == "watermark_before":
            sources.append(f"lease.{raw_sql.column(Tenant, 'incidents_watermark')}")
        else:
            sources.append("%s")
            params.append(field.get_db_prep_save(getattr(run, field.attname), connection))
    with raw_sql.cursor() as cursor:
        cursor.execute(
            _begin_sql(lease, history, ", ".join(sources)),
            [*lease_params, *history_params, *params],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    *tenant_row, run.pk = row
    tenant.took_over_lease = False
    tenant.lease_read = tenant.load_row(tenant_row)
    run.watermark_before = tenant.incidents_watermark
    run._state.adding, run._state.db = False, connection.alias
    return token, run


@functools.cache
def _run_fields() -> list[Any]:
    return [f for f in SyncRun._meta.concrete_fields if not f.primary_key]


@functools.lru_cache(maxsize=4)
def _begin_sql(lease: str, history: str, sources: str) -> str:
    columns = ", ".join(connection.ops.quote_name(f.column) for f in _run_fields())
    run_id = raw_sql.column(SyncRun, "id")
    return (  # names from the models, values as parameters
        f"WITH lease AS ({lease} RETURNING {row_columns()}, {history}), "  # noqa: S608
        f"run AS (INSERT INTO {raw_sql.table(SyncRun)} ({columns}) SELECT {sources} FROM lease "
        f"RETURNING {run_id}) SELECT lease.*, run.{run_id} FROM lease CROSS JOIN run"
    )


def _follow_up_requested(*, tenant: Tenant, full: bool) -> SyncRun:
    return SyncRun(
        tenant=tenant,
        started_at=timezone.now(),
        full=full,
        outcome=SyncOutcome.SKIPPED,
        error_message="A sync of this tenant is running; another one follows it.",
    )


def _not_taken(*, tenant: Tenant, full: bool, resume: dict[str, Any]) -> SyncRun:
    if resume.get("run_id"):
        # A second copy of a retry message, or a retry after a takeover: not ours any more.
        known = SyncRun.objects.filter(pk=resume["run_id"], tenant=tenant).first()
        if known is not None:
            return known
    now = timezone.now()
    return SyncRun.objects.create(
        tenant=tenant,
        started_at=now,
        finished_at=now,
        full=full,
        outcome=SyncOutcome.SKIPPED,
        error_message="Another sync of this tenant is running.",
    )


def _close_abandoned_runs(*, tenant: Tenant, keep: SyncRun, now: datetime) -> None:
    """We took the tenant's lease over from a run that never released it: runs still marked
    running lost their worker (SIGKILL, a machine gone), and runs waiting for a retry lost
    their retry message (or it is late, and will find its run finished). A run that ended
    released its lease after writing its outcome, so a released lease leaves none."""
    others = SyncRun.objects.filter(tenant=tenant, outcome__in=UNFINISHED).exclude(pk=keep.pk)
    running = Q(outcome=SyncOutcome.RUNNING)
    others.update(  # one statement: every run of every cycle passes here
        outcome=SyncOutcome.FAILED,
        finished_at=now,
        error_class=Case(When(running, then=Value("WorkerLost")), default=Value("RetryLost")),
        error_message=Case(
            When(running, then=Value(WORKER_LOST_TAKEN_OVER)),
            default=Value("This sync's retry never came; a later run took over."),
        ),
    )


WORKER_LOST_TAKEN_OVER = "The worker running this sync stopped; a later run took over."


def close_dead_runs(now: datetime | None = None, *, tenant: Tenant | None = None) -> int:
    """Runs still marked unfinished whose tenant's lease has expired: their worker died or
    their retry was lost. Called by the scheduler and the status page, so that a dead run
    shows as such within one lease, not when the next run happens to start."""
    now = now or timezone.now()
    unfinished = SyncRun.objects.filter(outcome__in=UNFINISHED)
    lapsed = Tenant.objects.lease_free(now).filter(pk__in=unfinished.values("tenant_id"))
    if tenant is not None:
        lapsed = lapsed.filter(pk=tenant.pk)
    with transaction.atomic():
        # A tenant row locked by a page's transaction has a live run, whatever its committed
        # lease says (the page renews it as it commits): skipped, not declared dead.
        held = lapsed.select_for_update(skip_locked=True, of=("self",))
        dead = unfinished.filter(tenant__in=list(held.values_list("pk", flat=True)))
        closed = dead.filter(outcome=SyncOutcome.RUNNING).update(
            outcome=SyncOutcome.FAILED,
            finished_at=now,
            error_class="WorkerLost",
            error_message="The worker running this sync stopped without finishing it.",
        )
        closed += dead.update(
            outcome=SyncOutcome.FAILED,
            finished_at=now,
            error_class="RetryLost",
            error_message="This sync's retry never came.",
        )
    return closed


def _read_again(tenant: Tenant) -> History:
    """Read the tenant again now that the run holds it (the caller's copy may predate
    another run's watermark), with its `History`: for a lease taken over, which
    `take_sync_lease` does not read back."""
    expressions, params = _history_read(tenant)
    with raw_sql.cursor() as cursor:
        cursor.execute(
            f"SELECT {row_columns()}, {expressions} FROM {raw_sql.table(Tenant)} "  # noqa: S608
            f"WHERE {raw_sql.table(Tenant)}.{raw_sql.column(Tenant, 'id')} = %s",
            [*params, tenant.pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise Tenant.DoesNotExist(f"Tenant {tenant.pk} is gone")
    return _history(*tenant.load_row(row))


def _history(
    had_problems: Any, last_success_at: Any, previous_watermark: Any, changed: Any, overlap: Any
) -> History:
    runs = SyncRun._meta
    last_success_at, previous_watermark = raw_sql.from_db(
        [runs.get_field("started_at"), runs.get_field("watermark_before")],
        [last_success_at, previous_watermark],
    )
    return History(
        had_problems=bool(had_problems),
        last_success_at=last_success_at,
        previous_watermark=previous_watermark,
        changed_since_previous=changed,
        in_overlap=overlap,
    )


def _history_read(tenant: Tenant) -> tuple[str, list[Any]]:
    """`History` as SQL expressions over the tenant's row, read with it in one statement
    (`Tenant.take_sync_lease`'s `read`), and their parameters. Raw SQL: the ORM's building
    of two subqueries and an EXISTS cost a tenth of a one-page run's CPU; in one statement
    with the lease, where a one-page run once spent six."""
    # Read by the lease's UPDATE, these see the database as the statement began: if it
    # waited for the previous run to let go, that run's last rows may not be counted. Each
    # figure then errs towards a wider window (more re-read, nothing skipped), and the
    # tenant's own columns are the row as locked, the previous run's watermark included.
    success = SyncOutcome.SUCCESS
    # The overlap's incidents are counted from below the watermark as this copy knows it: at
    # or behind the row's (it only moves on), so at least as many as the overlap holds.
    earliest, overlap = (
        datetime.min.replace(tzinfo=UTC),
        timedelta(minutes=settings.SYNC_OVERLAP_MINUTES),
    )
    if tenant.incidents_watermark is not None:
        earliest = max(earliest + overlap, tenant.incidents_watermark) - overlap
    updated = Incident._meta.get_field("last_update_time")
    params = [success, success, False, success, False, 10 * PAGE_SIZE]
    return _history_sql(), [*params, updated.get_db_prep_value(earliest, connection), PAGE_SIZE]


@functools.cache
def _history_sql() -> str:
    runs, run = raw_sql.table(SyncRun), lambda name: raw_sql.column(SyncRun, name, "r")
    tenant = f"{raw_sql.table(Tenant)}.{raw_sql.column(Tenant, 'id')}"
    latest_success = f"FROM {runs} r WHERE {run('tenant')} = {tenant} AND {run('outcome')} = %s"
    newest_first = f"ORDER BY {run('started_at')} DESC LIMIT 1"
    previous_watermark = (
        f"(SELECT {run('watermark_before')} {latest_success} AND {run('full')} = %s "
        f"AND {run('watermark_before')} IS NOT NULL {newest_first})"
    )
    updated = raw_sql.column(Incident, "last_update_time", "i")
    changed = (  # counted up to a limit
        f"SELECT 1 FROM {raw_sql.table(Incident)} i WHERE "  # noqa: S608
        f"{raw_sql.column(Incident, 'tenant', 'i')} = {tenant} "
        f"AND {updated} > {previous_watermark} LIMIT %s"
    )
    in_overlap = (  # counted up to a limit
        f"SELECT 1 FROM {raw_sql.table(Incident)} i WHERE "  # noqa: S608
        f"{raw_sql.column(Incident, 'tenant', 'i')} = {tenant} AND {updated} >= %s "
        f"AND {updated} <= {raw_sql.table(Tenant)}.{raw_sql.column(Tenant, 'incidents_watermark')} "
        "LIMIT %s"
    )
    # Names from the models, values as parameters.
    return (
        f"EXISTS (SELECT 1 FROM {raw_sql.table(SyncProblem)} p "  # noqa: S608
        f"WHERE {raw_sql.column(SyncProblem, 'tenant', 'p')} = {tenant}), "
        f"(SELECT {run('started_at')} {latest_success} {newest_first}), "
        f"{previous_watermark}, (SELECT COUNT(*) FROM ({changed}) AS changed), "
        f"(SELECT COUNT(*) FROM ({in_overlap}) AS in_overlap)"
    )


def _run_for(
    *, tenant: Tenant, full: bool, task_id: str, resume: dict[str, Any] | None, now: datetime
) -> SyncRun:
    """The SyncRun to write to: the interrupted one when resuming (only if it is still
    waiting for this retry: a finished run is returned as it is), else a new one."""
    if resume and resume.get("run_id"):
        runs = SyncRun.objects.filter(pk=resume["run_id"], tenant=tenant)
        runs.filter(outcome__in=(SyncOutcome.RETRYING, SyncOutcome.THROTTLED)).update(
            outcome=SyncOutcome.RUNNING, task_id=task_id[:64]
        )
        run = runs.first()
        if run is not None:
            # RUNNING when reopened (or redelivered after its worker died: ours now that
            # we hold the lease), else finished and left as it is.
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
    token: str,
    progress: Progress | None,
    history: History | None = None,
) -> SyncRun:
    history = history or History()
    if "since" in resume:
        since = _parse(resume["since"])
    else:
        since = _window_start(tenant, run.full, history)
    newest = _parse(resume.get("newest"))
    cursor: dict[str, Any] = {
        "run_id": run.pk,
        "since": _iso(since),
        "newest": _iso(newest),
        "next_url": resume.get("next_url"),
        "next_skip": resume.get("next_skip", 0),
        "page": resume.get("page", 1),
        "lease_token": token,
        "throttled": resume.get("throttled", 0),
        "failures": resume.get("failures", 0),
    }
    try:
        client = tenant.incident_client()
    except errors.MicrosoftError as exc:  # no Entra tenant ID (yet)
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc, token=token)
        return run
    calls_before = run.api_calls
    try:
        for page in _pages(tenant=tenant, client=client, cursor=cursor, history=history):
            synced_at = timezone.now()
            repairs = {"missing": 0, "stale": 0} if run.reconcile else None
            stored = store_fenced_page(
                tenant=tenant,
                token=token,
                incidents=page.incidents,
                problems=page.problems,
                synced_at=synced_at,
                repairs=repairs,
                # Nothing to clear on a tenant without problems (nearly all of them).
                clear_problems=history.had_problems or run.problems > 0,
                imported=history.last_success_at is None,
            )
            if repairs is not None:
                run.missing_repaired += repairs["missing"]
                run.stale_repaired += repairs["stale"]
            for item in page.incidents:
                # A lastUpdateTime in the future (a broken or hostile answer) would move the
                # window past every real change and stop the tenant's sync for good.
                if item.last_update_time > synced_at + WATERMARK_SKEW:
                    continue
                if newest is None or item.last_update_time > newest:
                    newest = item.last_update_time
            cursor.update(
                newest=_iso(newest),
                next_url=page.next_url,
                next_skip=page.next_skip or 0,
                page=page.number + 1,
                failures=0,  # backoff counts failures per page: progress resets it
            )
            run.pages += 1
            run.api_calls = calls_before + client.api_calls
            run.created_count += stored.created
            run.updated_count += stored.updated
            run.problems += stored.problems
            if not page.is_last:  # progress for the status page; the last one `_finish` writes
                run.save(update_fields=PROGRESS_FIELDS)
            if progress:
                progress(run)
        if history.had_problems:
            retry_problems(tenant=tenant, client=client, run=run)
        run.api_calls = calls_before + client.api_calls
    except LeaseLost:
        # Another run took the tenant over: it owns the history from here.
        run.api_calls = calls_before + client.api_calls
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=LeaseLost(LEASE_LOST))
        return run
    except errors.MicrosoftError as exc:
        run.api_calls = calls_before + client.api_calls
        if isinstance(exc, errors.Transient):
            return _retry_later(tenant=tenant, run=run, exc=exc, cursor=cursor)
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc, token=token)
        _record_consent_error(tenant=tenant, exc=exc)
        return run
    except BaseException as exc:  # a bug or a time limit: record it, then let it propagate
        run.api_calls = calls_before + client.api_calls
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc, token=token)
        raise
    return _succeeded(tenant=tenant, run=run, newest=newest, token=token)


def _pages(
    *, tenant: Tenant, client: IncidentClient, cursor: dict[str, Any], history: History
) -> Iterator[defender.Page]:
    """The run's listing from its cursor (which the caller moves on page by page). After the
    first page, Microsoft's clock is known: when it is behind the window
    (`_clock_stepped_back`), the listing starts again from further back (one call more)
    instead of knowingly skipping what was stamped by the stepped-back clock."""
    while True:
        since = _parse(cursor["since"])
        pages = client.incident_pages(
            since=since,
            start_url=cursor["next_url"],
            start_skip=cursor["next_skip"],
            first_page_number=cursor["page"],
        )
        first = next(pages, None)
        if first is None:
            return
        yield first
        earlier = _clock_stepped_back(
            tenant=tenant,
            since=since,
            now=client.microsoft_time,
            previous=history.last_success_at,
        )
        if earlier is None:
            # The rest read one page ahead, once the cursor no longer moves here (the caller
            # moves it in its own thread).
            yield from read_ahead(pages)
            return
        cursor.update(since=_iso(earlier), next_url=None, next_skip=0, page=1)


def _clock_stepped_back(
    *, tenant: Tenant, since: datetime | None, now: datetime | None, previous: datetime | None
) -> datetime | None:
    """An earlier window start when Microsoft's clock (`now`, its last Date header) stepped
    back since the tenant's last successful run began (`previous`), further than `since`
    allows for.

    Microsoft's clock runs on from wherever it stepped to, so every change since that run
    began is stamped at or after `now − elapsed` (elapsed on our clock). A window starting
    later knowingly skips changes: the watermark is ahead of Microsoft's clock (it stepped
    back beyond the overlap, or an answer carried a lastUpdateTime from its future).
    """
    if since is None or now is None or previous is None:
        return None
    earliest = now - (timezone.now() - previous)
    if earliest + CLOCK_STEP_TOLERANCE >= since:
        return None
    logger.warning(
        "Tenant %s: Microsoft's clock is %ds behind this sync's window; reading from %s",
        tenant.pk,
        (since - earliest).total_seconds(),
        earliest - CLOCK_STEP_TOLERANCE,
    )
    return earliest - CLOCK_STEP_TOLERANCE


def retry_problems(*, tenant: Tenant, client: IncidentClient, run: SyncRun) -> None:
    """Fetch each of the tenant's problem incidents once more (`GET /api/incidents/{id}`),
    the longest-waiting first, up to `PROBLEM_RETRIES_PER_RUN`; store those that now parse
    and store (their problem is cleared), count the others again. Only those `run` has not
    seen: what its listing received again was stored (clearing its problem) or recorded
    (`last_seen` from this run). No set of the listed IDs is kept: a run over 100,000
    incidents held ~8 MB of them until its end.

    Best effort, after the listing: a transient error ends the retries until the next run
    instead of failing or repeating a run whose pages are stored.
    """
    problems = SyncProblem.objects.filter(tenant=tenant, last_seen__lt=run.started_at)
    tried = 0
    for problem in _in_batches(problems):
        incident_id = problem.retryable_id
        if incident_id is None:
            continue
        if tried >= PROBLEM_RETRIES_PER_RUN:
            return
        tried += 1
        now = timezone.now()
        try:
            item = client.get_incident(incident_id)
        except errors.BadResponse as exc:  # still unreadable (or refused): seen once more
            record_problem(
                tenant=tenant,
                problem=defender.ItemProblem(
                    problem.microsoft_id, f"BadResponse: {exc.message}", problem.raw_text
                ),
                now=now,
            )
            run.problems += 1
            continue
        except errors.Transient as exc:
            logger.info("Tenant %s: problem retries stop for this run: %s", tenant.pk, exc)
            return
        if item is None:
            # Microsoft no longer has it (merged away, or past retention): nothing to store.
            logger.warning(
                "Tenant %s: incident %s of a sync problem is gone (404)", tenant.pk, incident_id
            )
            problem.delete()
            continue
        stored = store_items(tenant=tenant, incidents=[item], synced_at=now)
        run.created_count += stored.created
        run.updated_count += stored.updated
        run.problems += stored.problems


def _in_batches(problems: QuerySet[SyncProblem], size: int = 100) -> Iterator[SyncProblem]:
    """In (`last_seen`, pk) order, one plain query for the first `size` (nearly every run
    has none, and a server-side cursor costs three round trips), more only while the
    caller asks, each batch after the last one's key: those retried meanwhile leave the
    set without shifting the rest."""
    problems = problems.order_by("last_seen", "pk")
    batch = list(problems[:size])
    while batch:
        yield from batch
        if len(batch) < size:
            return
        last = batch[-1]
        after = Q(last_seen__gt=last.last_seen) | Q(last_seen=last.last_seen, pk__gt=last.pk)
        batch = list(problems.filter(after)[:size])


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
        _finish(
            tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=exc, token=cursor["lease_token"]
        )
        return run
    if not tenant.hold_lease_for_retry(token=cursor["lease_token"], seconds=countdown):
        _finish(tenant=tenant, run=run, outcome=SyncOutcome.FAILED, exc=LeaseLost(LEASE_LOST))
        return run
    _finish(tenant=tenant, run=run, outcome=outcome, exc=exc)
    logger.info("Sync of tenant %s retries in %.1fs: %s", tenant.pk, countdown, exc)
    raise RetryLater(countdown, cursor, cause=exc)


def _succeeded(*, tenant: Tenant, run: SyncRun, newest: datetime | None, token: str) -> SyncRun:
    """After the last page committed: advance the watermark (never backwards)."""
    run.watermark_after = tenant.incidents_watermark
    if newest is not None and (run.watermark_after is None or newest > run.watermark_after):
        run.watermark_after = newest
    _finish(tenant=tenant, run=run, outcome=SyncOutcome.SUCCESS, newest=newest, token=token)
    return run


def _finish(
    *,
    tenant: Tenant,
    run: SyncRun,
    outcome: str,
    exc: BaseException | None = None,
    newest: datetime | None = None,
    token: str = "",
) -> bool:
    """Close the run (or pause it for a retry) and say so on the tenant; only while it is
    running: a run someone else closed meanwhile (a takeover) keeps that outcome. The
    tenant's watermark moves to `newest` and the run's lease (`token`) is released in the
    same statement (`Tenant.end_sync_run`), on PostgreSQL the run's own UPDATE with it."""
    now = timezone.now()
    run.outcome = outcome
    run.finished_at = now
    run.error_class = type(exc).__name__[:64] if exc else ""
    run.error_message = _message(exc) if exc else ""
    fields = {name: getattr(run, name) for name in FINISH_FIELDS}
    closed = raw_sql.update_statement(
        SyncRun, {"id": run.pk, "outcome": SyncOutcome.RUNNING}, fields
    )
    if tenant.end_sync_run(
        token=token,
        newest=newest,
        outcome=outcome,
        at=now,
        error_class=run.error_class,
        error_message=run.error_message,
        after=closed,
    ):
        return True
    run.refresh_from_db()
    if newest is not None or token:
        tenant.end_sync_run(token=token, newest=newest)
    return False


PROGRESS_FIELDS = [
    *("pages", "api_calls", "created_count", "updated_count", "problems"),
    *("missing_repaired", "stale_repaired"),
]
FINISH_FIELDS = [
    "outcome",
    "finished_at",
    "error_class",
    "error_message",
    "pages",
    "api_calls",
    "created_count",
    "updated_count",
    "throttled_waits",
    "watermark_after",
    "missing_repaired",
    "stale_repaired",
    "problems",
]
LEASE_LOST = "This sync lost its lease (it was too slow or paused); another run took over."


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


def reconcile_due(tenant_pks: list[int], now: datetime | None = None) -> list[int]:
    """Of the tenants due for a sync, the one whose reconciliation pass is most overdue (at
    most one per tick: low priority, spread over the day, and within the call budget — a
    pass is a full listing, which also does what the incremental sync would have)."""
    hours = settings.SYNC_RECONCILE_HOURS
    if not hours or not tenant_pks:
        return []
    now = now or timezone.now()
    last: dict[int, datetime] = {}
    passes = SyncRun.objects.filter(tenant_id__in=tenant_pks, outcome=SyncOutcome.SUCCESS).filter(
        Q(reconcile=True) | Q(full=True)
    )
    for tenant_pk, started in passes.values_list("tenant_id", "started_at"):
        if tenant_pk not in last or started > last[tenant_pk]:
            last[tenant_pk] = started
    cutoff = now - timedelta(hours=hours)
    # A tenant never synced gets its first (full) sync anyway: nothing to reconcile yet.
    never_synced = set(
        Tenant.objects.filter(pk__in=tenant_pks, incidents_watermark__isnull=True).values_list(
            "pk", flat=True
        )
    )
    overdue = [pk for pk in tenant_pks if pk not in never_synced and last.get(pk, cutoff) <= cutoff]
    overdue.sort(key=lambda pk: last.get(pk, datetime.min.replace(tzinfo=now.tzinfo)))
    return overdue[:1]


def quiet_tenants(tenant_pks: list[int]) -> set[int]:
    """Of these tenants, those whose last run read at most one page, a first sync behind
    them: their next run is most likely as small (a batch of them shares one task)."""
    last = SyncRun.objects.filter(tenant=OuterRef("pk")).order_by("-started_at")
    synced = Tenant.objects.filter(pk__in=tenant_pks, incidents_watermark__isnull=False)
    quiet = synced.annotate(last_pages=Subquery(last.values("pages")[:1])).filter(last_pages__lte=1)
    return set(quiet.values_list("pk", flat=True))


def sync_due_tenants() -> list[int]:
    """The primary keys of the tenants the scheduled sync should run for: syncable, and not
    held by a run (running, or waiting out a retry's countdown). A tenant whose retry never
    came is due again once its lease (countdown + one lease) expired."""
    close_dead_runs()
    due = Tenant.objects.syncable().lease_free(timezone.now())
    return list(due.order_by("pk").values_list("pk", flat=True))
