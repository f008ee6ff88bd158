"""Storing what the sync (and an incident action) received: a page of incidents upserted
with their alerts, fenced by the run's lease, and the items that could not be stored kept
as sync problems.

`store_fenced_page` is the sync's way in (the lease fence, never over a newer copy);
`store_page` stores Microsoft's answer to an incident action; both end in `store_items`,
which keeps one poison incident from blocking the rest of its page.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from partner_portal import json_text, raw_sql
from partner_portal.incidents import bulk_upsert, counters, outbox
from partner_portal.incidents.models import (
    Alert,
    Incident,
    IncidentSearch,
    SyncProblem,
    id_hash,
)
from partner_portal.incidents.outbox import Snapshot
from partner_portal.microsoft import defender, vocabulary
from partner_portal.tenants.models import Tenant, lease_seconds

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
    "raw",
    "text_repaired",
    "synced_at",
]
# An incident re-read as it is stored (a reconciliation pass's full listing, overlaps) is
# left as it is: not even `synced_at` moves, which would cost a new row version and, in a
# full page, an entry in each of its indexes (~7 KB of WAL). Its lastUpdateTime first: any
# change at Microsoft moves it, so a changed row is told apart by one comparison.
UNLESS_SAME = [
    "last_update_time",
    *(f for f in INCIDENT_FIELDS if f not in ("last_update_time", "synced_at")),
]

ALERT_FIELDS = [
    "microsoft_id",
    "title",
    "description",
    "severity",
    "category",
    "status",
    "detection_source",
    "service_source",
    "mitre_techniques",
    "first_activity",
    "last_activity",
    "devices",
    "entities",
    "raw",
]


class LeaseLost(Exception):
    """This run's lease was taken over (it expired, another run took the tenant): nothing
    more of this run may be written."""


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


@dataclass(frozen=True)
class Stored:
    """What storing one page did: incidents created and updated (those whose stored copy
    changed: one read again as it is stored is neither), and items recorded as sync
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
    before: Snapshot | None = None,
    clear_problems: bool = True,
    imported: bool | None = None,
    page_first: bool = True,
    page_savepoint: bool = True,
) -> Stored:
    """Store a page item by item, without paying for it when nothing is wrong:

    1. the whole page in one transaction (the fast path: a few queries for 100 incidents);
    2. if the database refuses it, each incident in its own savepoint, so that one poison
       incident cannot block the others;
    3. each incident it still refuses, and each item of `problems` (could not be parsed),
       is recorded as a `SyncProblem`; an incident stored clears its problem (unless the
       caller knows there is none: `clear_problems`).

    `before`: the stored state of these incidents, read and locked by the caller in its
    transaction (`outbox.snapshot`), else read here. `imported`: whether these are the
    tenant's first sync's history (`outbox.record`), else looked up. `page_first=False`
    skips step 1; `page_savepoint=False` runs it in the caller's transaction without a
    savepoint of its own (two round trips fewer), so that a refusal is raised to the
    caller, which rolls back and calls again with `page_first=False`.
    """
    # The same incident twice in a page (paging shifted under us): keep the newest.
    newest: dict[int, defender.IncidentData] = {}
    for item in incidents:
        known = newest.get(item.incident_id)
        if known is None or item.last_update_time >= known.last_update_time:
            newest[item.incident_id] = item
    refused: list[defender.ItemProblem] = []
    page = list(newest.values())
    stored = False
    if page_first:
        try:
            with transaction.atomic(savepoint=page_savepoint):
                created, updated = _upsert(tenant, page, synced_at, before, imported)
            stored = True
        except Exception:  # whatever one item does to the database, find which one below
            if not page_savepoint:
                raise
            logger.info("Tenant %s: a page was refused; storing it item by item", tenant.pk)
    if not stored:
        created = updated = 0
        for item in page:
            try:
                with transaction.atomic():
                    c, u = _upsert(tenant, [item], synced_at, before, imported)
            except Exception as exc:
                refused.append(_refused(item, exc))
                continue
            created, updated = created + c, updated + u
    failed = {p.incident_id for p in refused}
    stored_keys = {problem_key(str(i)) for i in newest if str(i) not in failed}
    if stored_keys and (clear_problems or refused or problems):
        SyncProblem.objects.filter(tenant=tenant, key__in=stored_keys).delete()
    for problem in [*problems, *refused]:
        record_problem(tenant=tenant, problem=problem, now=synced_at)
    return Stored(created, updated, len(problems) + len(refused))


def _upsert(
    tenant: Tenant,
    items: list[defender.IncidentData],
    synced_at: datetime,
    before: Snapshot | None = None,
    imported: bool | None = None,
) -> tuple[int, int]:
    """Upsert incidents and their alerts (callers hold a transaction): one statement for the
    incidents, and their alerts compared with the stored ones (`_store_alerts`). Returns
    (created, updated): updated, those stored before whose row or alerts changed."""
    if not items:
        return 0, 0
    items = sorted(items, key=lambda item: item.incident_id)  # one lock order for every writer
    ids = [item.incident_id for item in items]
    rows = [_incident_row(tenant, item, synced_at) for item in items]
    if before is None:
        before = outbox.snapshot(tenant=tenant, microsoft_ids=ids)  # alerting: see outbox.py
    pks: dict[int, int] = dict(
        bulk_upsert.upsert(
            Incident,
            rows,
            unique=["tenant", "microsoft_id"],
            update=INCIDENT_FIELDS,
            returning=["microsoft_id", "id"],
            unless_same=UNLESS_SAME,
        )
    )
    written = set(pks)
    # Those left as they were are not returned: their keys as read before (or, for a row
    # another writer inserted since, as stored now).
    unreturned = [i for i in ids if i not in pks]
    pks.update({i: before[i]["id"] for i in unreturned if i in before})
    if len(pks) < len(ids):
        stored = Incident.objects.filter(tenant=tenant, microsoft_id__in=unreturned)
        pks.update(stored.values_list("microsoft_id", "id"))
    outbox.record(tenant=tenant, before=before, incidents=rows, pks=pks, imported=imported)
    counters.record(tenant=tenant, before=before, incidents=rows)  # the summary's counts
    _store_search(tenant, {pks[item.incident_id]: item for item in items}, before)
    alerts_changed = _store_alerts({pks[item.incident_id]: item.alerts for item in items})
    known = [i for i in ids if i in before]
    updated = [i for i in known if i in written or pks[i] in alerts_changed]
    return len(ids) - len(known), len(updated)


def _store_search(
    tenant: Tenant, items: dict[int, defender.IncidentData], before: Snapshot
) -> None:
    """Write the search words of these incidents (by primary key) that are new or changed:
    most changes at Microsoft leave them as they were, and then nothing is written."""
    stored = {row["id"]: row["search_text"] for row in before.values()}
    rows = []
    for pk, item in items.items():
        text = search_text(item)
        if stored.get(pk) != text:
            rows.append({"incident_id": pk, "tenant_id": tenant.pk, "text": text})
    bulk_upsert.upsert(IncidentSearch, rows, unique=["incident"], update=["text"])


def _stored(incident_pks: Iterable[int]) -> list[tuple[int, int, str, str]]:
    """The stored alerts of these incidents: (pk, incident pk, id hash, content digest). Raw
    SQL built once, prepared on PostgreSQL (raw_sql.cursor): every page reads them."""
    matches, params = raw_sql.one_of(list(incident_pks), "bigint")
    with raw_sql.cursor() as cursor:
        cursor.execute(_stored_sql().replace("%(ids)s", matches), params)
        return list(cursor.fetchall())


@functools.cache
def _stored_sql() -> str:
    names = ("id", "incident", "microsoft_id_hash", "content_hash")
    columns = ", ".join(raw_sql.column(Alert, name) for name in names)
    incident = raw_sql.column(Alert, "incident")
    return f"SELECT {columns} FROM {raw_sql.table(Alert)} WHERE {incident} %(ids)s"  # noqa: S608


def _store_alerts(alerts_of: dict[int, list[defender.AlertData]]) -> set[int]:
    """Make the stored alerts of these incidents (by primary key) what was received: one
    query reads the stored alerts' keys and content digests; only the alerts that are new or
    changed are written (one statement) and only those gone are deleted. An unchanged alert
    (most of them, on every re-read) costs neither the database nor the JSON document.
    The caller holds these incidents' rows locked (outbox.snapshot, or inserted them).
    Returns the incidents whose alerts changed."""
    alerts: dict[tuple[int, str], Row] = {}
    for incident_pk, received in alerts_of.items():
        for a in received:
            alert = _alert_row(incident_pk, a)
            alerts[(incident_pk, alert["microsoft_id_hash"])] = alert
    stored = {
        (incident_pk, key): (pk, digest) for pk, incident_pk, key, digest in _stored(alerts_of)
    }
    gone = {key: pk for key, (pk, _) in stored.items() if key not in alerts}
    if gone:
        Alert.objects.filter(pk__in=gone.values()).delete()
    changed = [
        row
        for key, row in alerts.items()
        if key not in stored or stored[key][1] != row["content_hash"]
    ]
    bulk_upsert.upsert(
        Alert,
        changed,
        unique=["incident", "microsoft_id_hash"],
        update=[*ALERT_FIELDS, "content_hash"],
    )
    return {row["incident_id"] for row in changed} | {incident_pk for incident_pk, _ in gone}


# A row to write, by field attname: plain dicts, not model instances (a Model's __init__
# cost more than the page's SQL, and bulk_upsert only reads the values).
Row = dict[str, Any]


def _incident_row(tenant: Tenant, item: defender.IncidentData, synced_at: datetime) -> Row:
    return dict(
        tenant_id=tenant.pk,
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
        raw=item.raw,
        text_repaired=item.text_repaired,
        synced_at=synced_at,
    )


def _alert_row(incident_pk: int, a: defender.AlertData) -> Row:
    row = dict(
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
    return {**row, "incident_id": incident_pk, "content_hash": alert_digest(a)}


# Every stored field of an alert is read from its `raw` (defender.parse_alert), so a digest of
# `raw` stands for the row, at half the JSON of digesting the row. Bump the version when
# parse_alert or _alert_row change what they store: each alert is then rewritten once.
ALERT_DIGEST_VERSION = b"raw-2:"


def alert_digest(a: defender.AlertData) -> str:
    # Keys in the order received, not sorted (a quarter cheaper): an answer that reorders an
    # alert's keys has it rewritten once, which is only what a change costs.
    text = json_text.dumps(a.raw, default=str)
    return hashlib.blake2b(ALERT_DIGEST_VERSION + text, digest_size=16).hexdigest()


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
    if text.isascii() and text.isdigit():  # not "²", which isdigit() accepts
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


def store_fenced_page(
    *,
    tenant: Tenant,
    token: str,
    incidents: list[defender.IncidentData],
    synced_at: datetime,
    problems: Sequence[defender.ItemProblem] = (),
    repairs: dict[str, int] | None = None,
    clear_problems: bool = True,
    imported: bool | None = None,
) -> Stored:
    """One page, written only while this run holds its lease, never over a newer copy.

    The fence: the page's transaction first renews the lease with a conditional UPDATE of
    the tenant's row, which holds that row's lock until the page commits — a run that lost
    its lease writes nothing (LeaseLost), and a run taking over waits for the page. With
    every writer of a tenant serialised that way, dropping the incidents whose stored copy
    has a later `lastUpdateTime` is a correct conditional upsert on PostgreSQL and SQLite.

    `clear_problems` and `imported`: see `store_items` (the run knows both). The page is
    stored in the fenced transaction without a savepoint of its own; if the database
    refuses it, that transaction is rolled back and a new one stores it item by item.
    """
    store = functools.partial(
        _store_fenced_page,
        tenant=tenant,
        token=token,
        incidents=incidents,
        synced_at=synced_at,
        problems=problems,
        repairs=repairs,
        clear_problems=clear_problems,
        imported=imported,
    )
    try:
        return store(page_first=True)
    except LeaseLost:
        raise
    except Exception:  # whatever one item does to the database, find which one
        logger.info("Tenant %s: a page was refused; storing it item by item", tenant.pk)
        return store(page_first=False)


def _store_fenced_page(
    *,
    tenant: Tenant,
    token: str,
    incidents: list[defender.IncidentData],
    synced_at: datetime,
    problems: Sequence[defender.ItemProblem],
    repairs: dict[str, int] | None,
    clear_problems: bool,
    imported: bool | None,
    page_first: bool,
) -> Stored:
    with transaction.atomic():
        if not tenant.renew_sync_lease(token=token):
            raise LeaseLost
        renewed = time.monotonic()
        # Locked: an incident action storing Microsoft's newer answer meanwhile is not
        # overwritten by this older copy (it waits, then this page skips that incident).
        # The same read is the outbox's and the counts' state before the page.
        before = outbox.snapshot(
            tenant=tenant, microsoft_ids={item.incident_id for item in incidents}
        )
        stored = {pk: row["last_update_time"] for pk, row in before.items()}
        newer = [
            item
            for item in incidents
            if stored.get(item.incident_id) is None
            or item.last_update_time >= stored[item.incident_id]
        ]
        result = store_items(
            tenant=tenant,
            incidents=newer,
            synced_at=synced_at,
            problems=problems,
            before=before,
            clear_problems=clear_problems,
            imported=imported,
            page_first=page_first,
            page_savepoint=False,
        )
        if time.monotonic() - renewed > lease_seconds() / 2:
            # Once more as a slow page commits: one that took longer than a lease would
            # commit a lease that has already lapsed, and the scheduler would take a live
            # run over. (A fast page commits at least half a lease.)
            tenant.renew_sync_lease(token=token)
    if repairs is not None:  # a reconciliation counts what it repaired
        for item in newer:
            known = stored.get(item.incident_id)
            if known is None:
                repairs["missing"] += 1
            elif known < item.last_update_time:
                repairs["stale"] += 1
    return result
