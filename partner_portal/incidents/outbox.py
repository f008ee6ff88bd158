"""The alerting outbox: what changed in a stored page, written in the page's transaction.

`store_page` calls `snapshot` (one query, before its upsert) and `record` (after it), both
inside its transaction: an outbox row commits with the change it describes, or not at all.
A re-stored version (the sync's overlap window, a re-run after a crash, a full re-sync) finds
the same `lastUpdateTime` and writes nothing; the unique (incident, version) constraint makes
a second writer harmless too. Alerting (partner_portal/alerts) reads these rows; nothing here
knows about rules or channels.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connection
from django.utils import timezone

from partner_portal import raw_sql
from partner_portal.incidents import bulk_upsert, counters
from partner_portal.incidents.models import (
    ChangeKind,
    Incident,
    IncidentChange,
    IncidentSearch,
    SyncOutcome,
    SyncRun,
)
from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.vocabulary import Kind
from partner_portal.tenants.models import Tenant

FIELDS = ("name", "severity", "status", "assigned_to", "tags", "last_update_time")
# The summary's maintained counts move from this state too.
SNAPSHOT_FIELDS = (*FIELDS, *(f for f in counters.FIELDS if f not in FIELDS))

# Stored incidents' state before a page (and their primary key, "id", and search words,
# "search_text", for the store), by Microsoft ID.
Snapshot = dict[int, dict[str, Any]]
_SNAPSHOT_COLUMNS = ("microsoft_id", "id", *SNAPSHOT_FIELDS)


def snapshot(*, tenant: Tenant, microsoft_ids: Iterable[int]) -> Snapshot:
    """The stored state of these incidents, before the page overwrites it.

    Locked until the page commits: a concurrent writer of the same incident (an action
    storing Microsoft's answer while the sync stores a page) waits, then reads the state
    this page wrote, so neither the outbox nor the counts start from a stale state.
    """
    ids = [
        Incident._meta.get_field("microsoft_id").get_db_prep_value(i, connection)
        for i in microsoft_ids
    ]
    if not ids:
        return {}
    # Raw SQL built once: through the ORM, building this query cost more than running it,
    # on every page.
    matches, id_params = raw_sql.one_of(ids, "bigint")
    with raw_sql.cursor() as cursor:
        cursor.execute(_snapshot_sql().replace("%(ids)s", matches), [tenant.pk, *id_params])
        rows = cursor.fetchall()
    fields = [raw_sql.field(Incident, name) for name in _SNAPSHOT_COLUMNS]
    fields.append(raw_sql.field(IncidentSearch, "text"))
    names = [*_SNAPSHOT_COLUMNS, "search_text"]
    converted = (dict(zip(names, raw_sql.from_db(fields, row), strict=True)) for row in rows)
    return {row["microsoft_id"]: row for row in converted}


@functools.cache
def _snapshot_sql() -> str:
    incidents, search = raw_sql.table(Incident), raw_sql.table(IncidentSearch)
    columns = ", ".join(raw_sql.column(Incident, n, incidents) for n in _SNAPSHOT_COLUMNS)
    tenant, microsoft_id = (
        raw_sql.column(Incident, "tenant", incidents),
        raw_sql.column(Incident, "microsoft_id", incidents),
    )
    sql = (
        f"SELECT {columns}, {raw_sql.column(IncidentSearch, 'text', search)} "  # noqa: S608
        f"FROM {incidents} LEFT JOIN {search} "
        f"ON {raw_sql.column(IncidentSearch, 'incident', search)} = "
        f"{raw_sql.column(Incident, 'id', incidents)} "
        f"WHERE {tenant} = %s AND {microsoft_id} %(ids)s "
        f"ORDER BY {microsoft_id}"  # locked in the upsert's order (store._upsert)
    )
    if connection.features.has_select_for_update:
        sql += f" FOR UPDATE OF {incidents}"  # the incidents only: their words go with them
    return sql


def kinds_of_change(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """What a rule can ask about: new, severity raised, status changed, reassigned, reopened.
    `after`: the row as written (store.Row)."""
    if before is None:
        return [ChangeKind.NEW]
    kinds: list[str] = []
    if vocabulary.severity_rank(after["severity"]) > vocabulary.severity_rank(before["severity"]):
        kinds.append(ChangeKind.SEVERITY_RAISED)
    old_status = vocabulary.normalise(Kind.STATUS, before["status"])
    new_status = vocabulary.normalise(Kind.STATUS, after["status"])
    if old_status != new_status:
        kinds.append(ChangeKind.STATUS_CHANGED)
        if vocabulary.is_open(old_status) is False and vocabulary.is_open(new_status):
            kinds.append(ChangeKind.REOPENED)
    if (before["assigned_to"] or "").lower() != (after["assigned_to"] or "").lower():
        kinds.append(ChangeKind.REASSIGNED)
    return kinds


def _text(value: Any, limit: int = 500) -> str:
    # PostgreSQL's jsonb refuses NUL and lone surrogates, which Microsoft's JSON may carry.
    if not isinstance(value, str):
        return ""
    return value[:limit].replace("\x00", "").encode("utf-8", "replace").decode()


def _values(incident: Incident | Mapping[str, Any]) -> dict[str, Any]:
    get = incident.get if isinstance(incident, Mapping) else lambda f: getattr(incident, f)
    return {
        "name": _text(get("name")),
        "severity": _text(get("severity")),
        "status": _text(get("status")),
        "assigned_to": _text(get("assigned_to")),
        "tags": [_text(t, 100) for t in (get("tags") or []) if isinstance(t, str)][:20],
    }


def record(
    *,
    tenant: Tenant,
    before: Snapshot,
    incidents: Iterable[Mapping[str, Any]],
    pks: dict[int, int],
    imported: bool | None = None,
) -> int:
    """Write one outbox row per incident (a row as written, store.Row) whose new version
    changed something a rule can ask about. `pks` maps Microsoft IDs to the stored rows'
    keys. `imported`: see below (None: looked up). Returns the rows written."""
    changes = []
    now = timezone.now()
    for incident in incidents:
        old = before.get(incident["microsoft_id"])
        if old is not None and old["last_update_time"] >= incident["last_update_time"]:
            continue  # the same (or an older) version again
        kinds = kinds_of_change(old, incident)
        if not kinds:
            continue  # a comment, a new alert of the same severity…
        if imported is None:
            # The first sync of a tenant brings its history: recorded (a rule may count it),
            # but marked so that alerting folds it into one digest instead of a message per
            # incident. (Not the watermark: a tenant with no incidents at its first sync
            # keeps none.)
            imported = not SyncRun.objects.filter(
                tenant=tenant, outcome=SyncOutcome.SUCCESS
            ).exists()
        changes.append(
            {  # every field by attname (bulk_upsert's rows: cheaper than model instances)
                "tenant_id": tenant.pk,
                "incident_id": pks[incident["microsoft_id"]],
                "version": incident["last_update_time"],
                "kinds": kinds,
                "before": _values(old) if old else {},
                "after": _values(incident),
                "imported": imported,
                "created_at": now,
                "dispatched_at": None,
            }
        )
    # Not bulk_create: its JSON columns would be quoted element by element (bulk_upsert.py).
    bulk_upsert.upsert(IncidentChange, changes, unique=["incident", "version"], update=[])
    return len(changes)
