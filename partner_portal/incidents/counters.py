"""Maintained incident counts for the summary: per tenant × severity × status, and per
tenant × UTC day of creation × severity, so that the summary reads a few rows per tenant
instead of counting a million incidents.

Exact because every change moves the counts in the transaction of the change itself:
1. a stored page (the sync, and an incident action storing Microsoft's answer) calls
   `record` with the stored state of its incidents before the write — read under a row
   lock (outbox.snapshot), so a concurrent writer of the same incident cannot make it
   stale — and the rows as written;
2. a tenant bound to another Entra tenant loses its incidents and its counts together
   (tenants/changes.py), a deleted tenant's counts go with it (ON DELETE CASCADE), and
   incidents deleted in the admin go through `delete_incidents`.

`rebuild` counts afresh from the incidents (`manage.py rebuild_incident_counts`, the admin
action): for a database restored or edited by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate

from partner_portal import raw_sql
from partner_portal.incidents.models import Incident, IncidentCount, IncidentDayCount
from partner_portal.tenants.models import Tenant

# The fields of an incident the counts depend on (outbox.snapshot reads them too).
FIELDS = ("severity", "status", "created_time")

StatusKey = tuple[int, str, str]  # tenant, severity, status
DayKey = tuple[int, date, str]  # tenant, UTC day created, severity


def _day(value: datetime) -> date:
    return value.astimezone(UTC).date()


def _move(
    by_status: Counter[StatusKey],
    by_day: Counter[DayKey],
    tenant_pk: int,
    state: Any,
    delta: int,
) -> None:
    # A stored row's snapshot or a row as written (dicts), or an Incident.
    values = state if isinstance(state, dict) else vars(state)
    severity, status = values["severity"] or "", values["status"] or ""
    by_status[(tenant_pk, severity, status)] += delta
    by_day[(tenant_pk, _day(values["created_time"]), severity)] += delta


def record(
    *,
    tenant: Tenant,
    before: dict[int, dict[str, Any]],
    incidents: Iterable[Incident | dict[str, Any]],
) -> None:
    """Move the counts of `incidents` (the rows as written, by Microsoft ID) from their
    stored state `before` (absent: a new incident) to their new one. The caller holds the
    transaction of the write and has locked the rows `before` was read from."""
    by_status: Counter[StatusKey] = Counter()
    by_day: Counter[DayKey] = Counter()
    for incident in incidents:
        row = incident if isinstance(incident, dict) else vars(incident)
        old = before.get(row["microsoft_id"])
        if old is not None:
            _move(by_status, by_day, tenant.pk, old, -1)
        _move(by_status, by_day, tenant.pk, incident, +1)
    _add(by_status, by_day)


COUNTS = (IncidentCount, ("tenant_id", "severity", "status"))
DAY_COUNTS = (IncidentDayCount, ("tenant_id", "day", "severity"))


def _add(by_status: Counter[StatusKey], by_day: Counter[DayKey]) -> None:
    """`n += delta` per key of both counts, inserting the keys not counted yet: on
    PostgreSQL in one statement (a sync page does this), elsewhere one per table.

    Keys in sorted order: two transactions moving some of the same counts lock their rows
    in the same order, so they wait for each other instead of deadlocking. INSERT … ON
    CONFLICT DO UPDATE is PostgreSQL's and SQLite's (3.24+) alike; Django's bulk_create can
    only overwrite a conflicting row, not add to it.
    """
    statements = []
    for (model, key), deltas in ((COUNTS, by_status), (DAY_COUNTS, by_day)):
        rows = sorted((k, n) for k, n in deltas.items() if n)
        if not rows:
            continue
        if connection.vendor == "postgresql":
            # One array per column: the same text for any number of rows, prepared once
            # (raw_sql.cursor); unnest keeps the arrays' (sorted) order.
            params: list[Any] = [
                list(column) for column in zip(*[(*k, n) for k, n in rows], strict=True)
            ]
        else:
            params = [value for k, n in rows for value in (*k, n)]
        statements.append((_add_sql(model, key, len(rows), connection.vendor), params))
    if len(statements) == 2 and connection.vendor == "postgresql":
        (first, first_params), (second, second_params) = statements
        statements = [(f"WITH counted AS ({first}) {second}", first_params + second_params)]
    with raw_sql.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def _add_sql(model: type[models.Model], key: tuple[str, ...], rows: int, vendor: str) -> str:
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [*key, "n"]
    if vendor == "postgresql":
        types = [raw_sql.field(model, c).db_type(connection) for c in columns]
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        source = f"SELECT * FROM unnest({arrays})"  # noqa: S608 (types from the model)
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * rows)
    # Names from the model, values as parameters.
    conflict = ", ".join(quote(c) for c in key)
    sql = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) {source} "  # noqa: S608
    return sql + f"ON CONFLICT ({conflict}) DO UPDATE SET n = {table}.n + EXCLUDED.n"


def delete_incidents(incidents: QuerySet[Incident]) -> int:
    """Delete incidents and take them out of the counts, in one transaction. Returns how
    many incidents were deleted."""
    with transaction.atomic():
        rows = list(incidents.select_for_update().values("pk", "tenant_id", *FIELDS))
        by_status: Counter[StatusKey] = Counter()
        by_day: Counter[DayKey] = Counter()
        for row in rows:
            _move(by_status, by_day, row["tenant_id"], row, -1)
        Incident.objects.filter(pk__in=[row["pk"] for row in rows]).delete()
        _add(by_status, by_day)
    return len(rows)


def rebuild(tenants: Iterable[int] | None = None) -> int:
    """Count afresh from the incidents (of `tenants`, or all). Returns the rows written.

    Writers of incidents wait meanwhile (PostgreSQL: a SHARE lock on the incident table,
    which lets readers be), so no change falls between the count and the counts; on SQLite
    the transaction holds the database's write lock from its start.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(Incident._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        incidents = Incident.objects.all()
        counts = IncidentCount.objects.all()
        day_counts = IncidentDayCount.objects.all()
        if tenants is not None:
            pks = list(tenants)
            incidents = incidents.filter(tenant__in=pks)
            counts, day_counts = counts.filter(tenant__in=pks), day_counts.filter(tenant__in=pks)
        counts.delete()
        day_counts.delete()
        written = _insert_select(
            IncidentCount,
            ("tenant_id", "severity", "status"),
            incidents.order_by().values_list("tenant_id", "severity", "status"),
        )
        written += _insert_select(
            IncidentDayCount,
            ("tenant_id", "day", "severity"),
            incidents.order_by()
            .annotate(day=TruncDate("created_time", tzinfo=UTC))
            .values_list("tenant_id", "day", "severity"),
        )
    return written


def _insert_select(
    model: type[IncidentCount | IncidentDayCount], key: tuple[str, ...], grouped: QuerySet
) -> int:
    """INSERT INTO counts (key…, n) SELECT key…, COUNT(*) … GROUP BY key…: the database
    counts, nothing travels through Python."""
    select, params = grouped.annotate(n=Count("*")).query.sql_with_params()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in (*key, "n"))
    with connection.cursor() as cursor:
        table = quote(model._meta.db_table)
        cursor.execute(f"INSERT INTO {table} ({columns}) {select}", params)  # noqa: S608
        return cursor.rowcount
