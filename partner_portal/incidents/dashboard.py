"""The dashboard's queries: keyset pages, capped counts, the summary and the export rows.

Every function takes a queryset that started from `visible_incidents(user)`, so the access
rule is applied once, in one place, before any filter or count.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import BooleanField, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from partner_portal.incidents.filters import DEFAULT_SORT, AccessRule
from partner_portal.incidents.models import (
    Incident,
    IncidentCount,
    IncidentDayCount,
    Severity,
    Status,
)
from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.graph import describe_evidence
from partner_portal.microsoft.vocabulary import Kind
from partner_portal.tenants.access import sees_every_tenant, visible_tenant_pks
from partner_portal.tenants.models import Tenant

PAGE_SIZE = 50
# Counting every match of a broad filter at 1M rows costs more than the page itself; past
# this many the list says "1,000+" instead.
COUNT_CAP = 1000
NEW_COUNT_CAP = 99
CHART_DAYS = 30
SUMMARY_CACHE_PREFIX = "incidents:summary:"

# Each sort ends with the primary key so that equal timestamps still have a strict order:
# a keyset page then never repeats or skips a row.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "updated": ("last_update_time", "id"),
    "created": ("created_time", "id"),
    "severity": ("severity_rank", "last_update_time", "id"),
}
DATETIME_KEYS = {"last_update_time", "created_time"}


def visible_incidents(user: Any) -> QuerySet[Incident]:
    # Whoever sees every tenant needs no tenant filter: a semi-join with every tenant
    # only costs the planner and each row.
    if sees_every_tenant(user):
        return Incident.objects.all()
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Incident.objects.none()
    # The visible tenants' subquery goes in as the SQL the ORM writes for it: a list page
    # puts it into five or six statements (its page, its counts, each view's count), and its
    # three joins cost ~0.8 M instructions to compile. Its text is the same for every staff
    # user (only their id differs), so it is compiled once per process.
    return Incident.objects.filter(tenant__in=AccessRule(_staff_tenants_sql(), [user.pk]))  # noqa: S611


_PROBE_USER_ID = -418


@functools.cache
def _staff_tenants_sql() -> str:
    """The access rule's subquery of a staff user's tenants, its one parameter the user's id."""
    probe = get_user_model()(pk=_PROBE_USER_ID, is_active=True, is_superuser=False)
    sql, params = visible_tenant_pks(probe).order_by().query.sql_with_params()
    if list(params) != [_PROBE_USER_ID]:  # the rule now depends on more than the user's id
        raise ImproperlyConfigured(f"visible_tenant_pks() has parameters {params!r}")
    return sql


def parse_sort(sort: str) -> tuple[tuple[str, ...], bool]:
    """`-updated` → (("last_update_time", "id"), descending=True)."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in SORT_KEYS:
        return parse_sort(DEFAULT_SORT)
    return SORT_KEYS[name], descending


def encode_cursor(incident: Incident | ListRow, fields: tuple[str, ...]) -> str:
    parts = []
    for field in fields:
        value = getattr(incident, field)
        parts.append(value.isoformat() if isinstance(value, datetime) else str(value))
    return "_".join(parts)


def decode_cursor(text: str | None, fields: tuple[str, ...]) -> list[Any] | None:
    """The cursor's values, or None when it is missing or malformed (→ the first page)."""
    if not text:
        return None
    parts = text.split("_")
    if len(parts) != len(fields):
        return None
    values: list[Any] = []
    try:
        for field, part in zip(fields, parts, strict=True):
            if field in DATETIME_KEYS:
                value = datetime.fromisoformat(part)
                if timezone.is_naive(value):
                    return None
                values.append(value)
            else:
                values.append(int(part))
    except ValueError:
        return None
    return values


def _row_compare(queryset: QuerySet, fields: tuple[str, ...], op: str, values: list[Any]):
    """`(a, b, id) < (x, y, z)`: a row comparison that PostgreSQL turns into an index seek
    on a matching composite index (an OR of per-column comparisons would scan from the top,
    so deep pages would get slower). SQLite ≥ 3.15 understands it too."""
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    table = quote(queryset.model._meta.db_table)
    columns = []
    params = []
    for field, value in zip(fields, values, strict=True):
        columns.append(f"{table}.{quote(queryset.model._meta.get_field(field).column)}")
        if isinstance(value, datetime):
            value = connection.ops.adapt_datetimefield_value(value)
        params.append(value)
    placeholders = ", ".join(["%s"] * len(values))
    sql = f"({', '.join(columns)}) {op} ({placeholders})"
    return RawSQL(sql, params, output_field=BooleanField())  # noqa: S611 (no user text)


class TenantName(NamedTuple):
    pk: int
    display_name: str


class ListRow(NamedTuple):
    """An incident as the list shows it: the page query's columns as values rather than an
    Incident and its Tenant (building those two instances per row cost ~15% of a list
    request's CPU). It reads like an incident, its tenant's name too."""

    id: int
    tenant_id: int
    tenant_name: str
    microsoft_id: int
    name: str
    severity: str
    severity_rank: int
    status: str
    classification: str
    determination: str
    assigned_to: str
    alert_count: int
    created_time: datetime
    last_update_time: datetime

    @property
    def pk(self) -> int:
        return self.id

    @property
    def tenant(self) -> TenantName:
        return TenantName(self.tenant_id, self.tenant_name)


# The page query's columns, in ListRow's order (raw JSON and search text are big).
LIST_COLUMNS = ("id", "tenant_id", "tenant__display_name", *ListRow._fields[3:])


@dataclass
class Page:
    incidents: list[ListRow]
    next_cursor: str | None
    previous_cursor: str | None

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_cursor is not None


def keyset_page(
    queryset: QuerySet[Incident],
    *,
    sort: str,
    after: str | None = None,
    before: str | None = None,
    last: bool = False,
    size: int = PAGE_SIZE,
    tenants_apart: bool = False,
) -> Page:
    """One page in `sort` order: the first, the one after/before a cursor, or the last.

    One query whatever the page's depth: it seeks to the cursor through the sort's index
    and reads `size + 1` rows (the extra row tells whether there is another page).
    1. Pages forward (first, after) read in sort order; backward (before, last) read in
       the reverse order and are flipped.
    2. The next/previous cursors are the page's last/first rows.
    `tenants_apart`: the tenants' names in a query of their own (see `_list_rows`).
    """
    fields, descending = parse_sort(sort)
    cursor = decode_cursor(after, fields)
    forward = True
    if cursor is None:
        cursor = decode_cursor(before, fields)
        # Backward from a valid "before" cursor, or from the end for the last page; a
        # malformed cursor means the first page.
        forward = cursor is None and not last
    reading_descending = descending if forward else not descending
    unpaged = queryset
    queryset = queryset.order_by(*[f"-{f}" if reading_descending else f for f in fields])
    if cursor is not None:
        queryset = queryset.filter(
            _row_compare(queryset, fields, "<" if reading_descending else ">", cursor)
        )
    rows = _list_rows(queryset[: size + 1], tenants_apart=tenants_apart)
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    if not rows:
        # A stale cursor (its rows were deleted, or "before" the first row): start over.
        if cursor is not None:
            return keyset_page(unpaged, sort=sort, size=size, tenants_apart=tenants_apart)
        return Page([], None, None)
    if forward:
        has_previous, has_next = cursor is not None, more
    else:
        has_previous, has_next = more, cursor is not None
    return Page(
        rows,
        next_cursor=encode_cursor(rows[-1], fields) if has_next else None,
        previous_cursor=encode_cursor(rows[0], fields) if has_previous else None,
    )


def _list_rows(queryset: QuerySet[Incident], *, tenants_apart: bool) -> list[ListRow]:
    if not tenants_apart:
        return [ListRow._make(row) for row in queryset.values_list(*LIST_COLUMNS)]
    # The tenants' names from a query of their own, for the page's tenants: with the
    # per-tenant search keys PostgreSQL estimates one match and joined every tenant with
    # every match (3.3 million rows filtered, 260 ms, for 3,300 matches of a common word).
    found = list(queryset.values_list(*LIST_COLUMNS[:2], *LIST_COLUMNS[3:]))
    tenants = Tenant.objects.filter(pk__in={row[1] for row in found}).order_by()
    names = dict(tenants.values_list("pk", "display_name"))
    return [ListRow(row[0], row[1], names[row[1]], *row[2:]) for row in found]


def capped_count(queryset: QuerySet, cap: int | None = None) -> tuple[int, bool]:
    """(count, more): counts at most cap + 1 rows, so the cost doesn't grow with the result."""
    return capped_counts([queryset], cap)[0]


def capped_counts(
    querysets: Sequence[QuerySet | None], cap: int | None = None
) -> list[tuple[int, bool]]:
    """`capped_count` of each queryset (None counts 0), in one query: the list page's
    count, its position and every view's count cost one round trip, not one each."""
    cap = COUNT_CAP if cap is None else cap
    parts: list[str] = []
    params: list[Any] = []
    for queryset in querysets:
        if queryset is None:
            parts.append("0")
            continue
        try:
            sql, more = queryset.order_by().values("pk")[: cap + 1].query.sql_with_params()
        except EmptyResultSet:  # .none(): an invalid filter (fail closed)
            parts.append("0")
            continue
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS capped)")  # noqa: S608 (the ORM's SQL)
        params += more
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)  # noqa: S608 (the ORM's SQL)
        counted = cursor.fetchone()
    return [(min(n, cap), n > cap) for n in counted]


def position_query(queryset: QuerySet, *, sort: str, page: Page) -> QuerySet | None:
    """The rows before `page` in `sort` order, for "51–100 of 374" (counted, capped, with
    the page's count); None on the first page, where there are none."""
    if not page.incidents or not page.has_previous:
        return None
    fields, descending = parse_sort(sort)
    values = [getattr(page.incidents[0], field) for field in fields]
    return queryset.filter(_row_compare(queryset, fields, ">" if descending else "<", values))


def last_page(page: Page, size: int, *, fields_of: str) -> Page:
    """The last page cut to `size` rows (what is left over after full pages), so that
    paging back from it lands on the pages paging forward does."""
    if len(page.incidents) <= size:
        return page
    fields, _ = parse_sort(fields_of)
    rows = page.incidents[-size:]
    return Page(rows, next_cursor=None, previous_cursor=encode_cursor(rows[0], fields))


def new_since_count(queryset: QuerySet, since: datetime) -> tuple[int, bool]:
    return capped_count(queryset.filter(last_update_time__gt=since), NEW_COUNT_CAP)


# --- Summary ------------------------------------------------------------------------------

SEVERITY_ORDER = Severity.values


@dataclass
class TenantRow:
    tenant_pk: int
    name: str
    by_severity: list[tuple[str, int]]
    total: int


@dataclass
class Summary:
    open_by_severity: list[tuple[str, int]]
    open_total: int
    # The tenants with the most severe open incidents (at most the `rows` asked for), and
    # how many tenants have any: a thousand rows cost more to build and to cache than the
    # page shows.
    tenants: list[TenantRow]
    tenants_with_open: int
    chart: dict[str, Any]

    @property
    def chart_rows(self) -> list[tuple[str, list[tuple[int, str]]]]:
        """The chart's numbers as table rows (day, (count, list URL) per severity), for
        screen-reader and keyboard users."""
        columns = [list(zip(d["data"], d["urls"], strict=True)) for d in self.chart["datasets"]]
        return [(label, [c[i] for c in columns]) for i, label in enumerate(self.chart["labels"])]


def open_counts(tenants: list[int] | None) -> dict[int, list[int]]:
    """{tenant pk: open incidents per severity, in SEVERITY_ORDER} of `tenants` (None: every
    tenant) that have any, summed from the maintained counts (incidents/counters.py): one
    row per tenant, whatever the number of incidents. A severity Microsoft adds later counts
    as Unspecified."""
    rows = IncidentCount.objects.exclude(status=Status.RESOLVED).filter(n__gt=0)
    if tenants is not None:
        rows = rows.filter(tenant__in=tenants)
    known = [s for s in SEVERITY_ORDER if s != Severity.UNSPECIFIED]
    sums = {
        f"s{i}": Sum(
            "n", filter=~Q(severity__in=known) if s == Severity.UNSPECIFIED else Q(severity=s)
        )
        for i, s in enumerate(SEVERITY_ORDER)
    }
    query = rows.order_by().values("tenant_id").annotate(**sums).values_list("tenant_id", *sums)
    try:
        sql, params = query.query.sql_with_params()
    except EmptyResultSet:  # tenants == []
        return {}
    # Read off the cursor: the ORM's per-value converters cost ~10 ms a thousand tenants.
    with connections[query.db].cursor() as cursor:
        cursor.execute(sql, params)
        return {pk: [n or 0 for n in numbers] for pk, *numbers in cursor.fetchall()}


def created_list_url(day: date, severity: str, *, list_url: str | None = None) -> str:
    """The incident list of one chart bar: created that UTC day, of that severity."""
    # What urlencode() would write, 150 times a summary: the day needs no quoting.
    query = f"created_from={day}&created_to={day}&severity={quote_plus(severity)}"
    return f"{list_url or reverse('incidents:list')}?{query}"


def created_per_day(
    tenants: list[int] | None, *, today: date, days: int = CHART_DAYS
) -> dict[str, Any]:
    """Chart.js-ready data: incidents of `tenants` (None: every tenant) created per UTC day,
    one dataset per severity, from the maintained per-day counts; and for each bar the
    address of its incidents on the list."""
    start = today - timedelta(days=days - 1)
    counted = IncidentDayCount.objects.filter(day__gte=start, day__lte=today)
    if tenants is not None:
        counted = counted.filter(tenant__in=tenants)
    rows = counted.order_by().values_list("day", "severity").annotate(total=Sum("n"))
    labels = [start + timedelta(days=i) for i in range(days)]
    list_url = reverse("incidents:list")
    index = {day: i for i, day in enumerate(labels)}
    series = {severity: [0] * days for severity in SEVERITY_ORDER}
    for day, severity, n in rows:
        if day in index:
            key = severity if severity in series else Severity.UNSPECIFIED
            series[key][index[day]] += n
    return {
        "labels": [day.isoformat() for day in labels],
        "datasets": [
            {
                "label": severity,
                # What the chart's legend says (label stays Microsoft's value).
                "title": vocabulary.label(Kind.SEVERITY, severity),
                "data": data,
                "urls": [created_list_url(day, severity, list_url=list_url) for day in labels],
            }
            for severity, data in series.items()
        ],
    }


def summary(
    tenants: list[int] | None, tenant_names: dict[int, str], *, today: date, rows: int
) -> Summary:
    """Open incidents by severity, the `rows` tenants with the most severe open incidents,
    and the 30-day chart, of `tenants` (None: every tenant)."""
    counts = open_counts(tenants)
    totals = [sum(column) for column in zip(*counts.values(), strict=True)] or [0] * len(
        SEVERITY_ORDER
    )

    def most_severe_first(item: tuple[int, list[int]]) -> tuple[list[int], str]:
        # High count, then medium, …, then the name.
        pk, numbers = item
        return [-n for n in numbers], tenant_names.get(pk, f"#{pk}")

    top = heapq.nsmallest(rows, counts.items(), key=most_severe_first)
    return Summary(
        open_by_severity=list(zip(SEVERITY_ORDER, totals, strict=True)),
        open_total=sum(totals),
        tenants=[
            TenantRow(
                tenant_pk=pk,
                name=tenant_names.get(pk, f"#{pk}"),
                by_severity=list(zip(SEVERITY_ORDER, numbers, strict=True)),
                total=sum(numbers),
            )
            for pk, numbers in top
        ],
        tenants_with_open=len(counts),
        chart=created_per_day(tenants, today=today),
    )


def cached_summary(
    tenant_names: dict[int, str], *, everyone: bool, rows: int
) -> tuple[Summary, datetime]:
    """(summary, when it was counted) of `tenant_names` (all of them when `everyone`, the
    access rule's `sees_every_tenant`), reused for a minute (the setting) per set of visible
    tenants and day. Reading the maintained counts costs a few milliseconds; the cache
    saves the rest (names, sorting, the chart's links) for a page that many open at once."""
    now = timezone.now()
    seconds = settings.DASHBOARD_SUMMARY_CACHE_SECONDS
    tenants = hashlib.sha256(",".join(map(str, sorted(tenant_names))).encode()).hexdigest()
    key = f"{SUMMARY_CACHE_PREFIX}{now.date().isoformat()}:{rows}:{tenants}"
    if seconds:
        cached = cache.get(key)
        if cached is not None:
            return cached
    # Whoever sees every tenant needs no tenant filter at all.
    visible = None if everyone else list(tenant_names)
    result = (summary(visible, tenant_names, today=now.date(), rows=rows), now)
    if seconds:
        cache.set(key, result, seconds)
    return result


# --- CSV export ---------------------------------------------------------------------------

EXPORT_COLUMNS = [
    ("tenant__display_name", "Tenant"),
    ("microsoft_id", "Incident ID"),
    ("name", "Name"),
    ("severity", "Severity"),
    ("status", "Status"),
    ("classification", "Classification"),
    ("determination", "Determination"),
    ("assigned_to", "Assigned to"),
    ("alert_count", "Alerts"),
    ("created_time", "Created (UTC)"),
    ("last_update_time", "Last update (UTC)"),
    ("portal_url", "Defender portal"),
]
# Columns in words, each followed by Microsoft's own value in a column of its own (what
# scripts and Microsoft's documentation match on).
EXPORT_LABELLED = {
    "severity": Kind.SEVERITY,
    "status": Kind.STATUS,
    "classification": Kind.CLASSIFICATION,
    "determination": Kind.DETERMINATION,
}


class _Echo:
    """A file-like object whose write() hands the line back, for a streamed csv.writer."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    # Incident names and assignees come from the customer's tenant: neutralise spreadsheet
    # formulas (CSV injection) by prefixing a quote.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_lines(queryset: QuerySet[Incident], *, sort: str) -> Iterator[str]:
    """CSV lines of every row in `sort` order, read in chunks (server-side cursor on
    PostgreSQL) so that memory stays flat whatever the number of rows."""
    fields, descending = parse_sort(sort)
    writer = csv.writer(_Echo())
    header = []
    for name, label in EXPORT_COLUMNS:
        header += [label, f"{label} (Microsoft)"] if name in EXPORT_LABELLED else [label]
    yield writer.writerow(header)
    rows = (
        queryset.order_by(*[f"-{f}" if descending else f for f in fields])
        .values_list(*[name for name, _ in EXPORT_COLUMNS])
        .iterator(chunk_size=2000)
    )
    kinds = [EXPORT_LABELLED.get(name) for name, _ in EXPORT_COLUMNS]
    for row in rows:
        cells = []
        for kind, value in zip(kinds, row, strict=True):
            if kind is not None:
                cells.append(_cell(vocabulary.label(kind, value) if value else ""))
            cells.append(_cell(value))
        yield writer.writerow(cells)


# --- Incident detail ----------------------------------------------------------------------

# What names an entity of each type, first non-empty wins (Microsoft's field names).
ENTITY_LABEL_FIELDS = {
    "User": ("userPrincipalName", "accountName"),
    "Ip": ("ipAddress",),
    "Url": ("url",),
    "File": ("fileName", "sha256", "sha1"),
    "Process": ("processCommandLine", "fileName", "processId"),
    "MailBox": ("mailboxAddress", "mailboxDisplayName"),
    "Mailbox": ("mailboxAddress", "mailboxDisplayName"),
    "MailMessage": ("subject", "internetMessageId"),
    "MailCluster": ("clusterByValue", "clusterBy"),
    "Registry": ("registryKey", "registryHive"),
    "SecurityGroup": ("securityGroupName", "securityGroupId"),
}


@dataclass
class Entity:
    label: str
    details: list[tuple[str, Any]]


def _details(item: dict[str, Any], skip: tuple[str, ...]) -> list[tuple[str, Any]]:
    # Real responses leave null fields out, the docs' examples list them as null: show
    # only what has a value.
    return [(k, v) for k, v in item.items() if k not in skip and v not in (None, "", [], {})]


def devices_of(alerts: list[Any]) -> list[Entity]:
    """The incident's devices across its alerts, each once."""
    seen: dict[str, Entity] = {}
    for alert in alerts:
        for device in alert.devices or []:
            if not isinstance(device, dict):
                continue
            key = str(device.get("mdatpDeviceId") or device.get("deviceId") or device)
            label = device.get("deviceDnsName") or device.get("mdatpDeviceId") or "Device"
            seen.setdefault(key, Entity(str(label), _details(device, ("deviceDnsName",))))
    return list(seen.values())


def entities_by_type(alerts: list[Any]) -> list[tuple[str, list[Entity]]]:
    """The incident's entities across its alerts, each once, grouped by entityType."""
    groups: dict[str, dict[str, Entity]] = defaultdict(dict)
    for alert in alerts:
        for entity in alert.entities or []:
            if not isinstance(entity, dict):
                continue
            kind = str(entity.get("entityType") or "Other")
            details = _details(entity, ("entityType",))
            label = next(
                (str(entity[f]) for f in ENTITY_LABEL_FIELDS.get(kind, ()) if entity.get(f)),
                str(details[0][1]) if details else kind,
            )
            groups[kind].setdefault(repr(details), Entity(label, details))
    return [(kind, list(entities.values())) for kind, entities in sorted(groups.items())]


def evidence_of(alerts: list[Any]) -> list[tuple[Any, list[dict[str, str]]]]:
    """Graph alerts' evidence with Microsoft's verdicts, per alert (Defender API alerts
    have none: their devices and entities are shown above)."""
    found = []
    for alert in alerts:
        raw = alert.raw if isinstance(alert.raw, dict) else {}
        items = raw.get("evidence")
        rows = [r for r in map(describe_evidence, items if isinstance(items, list) else []) if r]
        if rows:
            found.append((alert, rows))
    return found
