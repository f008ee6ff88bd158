"""Formatting filters for the incident pages (and the tenant pages' times)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from typing import Any
from urllib.parse import quote

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.html import avoid_wrapping, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import TIME_STRINGS, timesince
from django.utils.translation import get_language

from partner_portal.incidents.dashboard import ListRow
from partner_portal.incidents.models import Severity
from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.vocabulary import Kind

register = template.Library()

SEVERITY_CLASSES: dict[str, str] = {
    Severity.HIGH: "sev-high",
    Severity.MEDIUM: "sev-medium",
    Severity.LOW: "sev-low",
}


@register.filter
def severity_class(severity: str) -> str:
    """The badge class of a severity (Informational/UnSpecified use the neutral badge)."""
    return SEVERITY_CLASSES.get(vocabulary.normalise(Kind.SEVERITY, severity), "")


@register.filter
def label(value: str, kind: str) -> str:
    """Plain words for one of Microsoft's values: `{{ incident.status|label:"status" }}`."""
    return _words(Kind(kind), value)


def _words(kind: Kind, value: str) -> str:
    """`label` with the kind as a Kind, for the list's rows."""
    return vocabulary.label(kind, value) if value else ""


@register.filter
def https_only(url: str) -> str:
    """Only https links leave the portal: a synced value must not become a javascript: link."""
    return url if isinstance(url, str) and url.lower().startswith("https://") else ""


def _utc_title(value: datetime) -> str:
    return f"{_to_seconds(value.astimezone(UTC))} UTC"


# "2026-05-04 13:45(:10)": isoformat() writes it at half the cost of strftime(), 50 rows a
# page, except for years before 1000, which it pads with zeros and strftime() does not.
def _to_minutes(value: datetime) -> str:
    if value.year < 1000:
        return f"{value:%Y-%m-%d %H:%M}"
    return value.isoformat(" ", "minutes")[:16]


def _to_seconds(value: datetime) -> str:
    if value.year < 1000:
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return value.isoformat(" ", "seconds")[:19]


@register.filter
def when(value: datetime | None) -> str:
    """`<time>` with the date and time in the viewer's time zone, UTC on hover."""
    if not isinstance(value, datetime):
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{} {}</time>',
        value.isoformat(),
        _utc_title(value),
        f"{local:%Y-%m-%d %H:%M}",
        local.tzname() or "",
    )


# timesince's units below a month, which need no calendar.
_SHORT_UNITS = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


_MINUTE, _FOUR_WEEKS = timedelta(minutes=1), timedelta(days=28)


def _ago(value: datetime, now: datetime | None = None) -> str:
    # The largest unit only ("1 day ago", not "1 day, 2 hours ago"): it fits a table cell.
    elapsed = (now or timezone.now()) - value
    if elapsed < _MINUTE:
        return "just now"
    if elapsed < _FOUR_WEEKS:
        # What timesince(depth=1) says, without its calendar work: 50 rows a page.
        seconds = elapsed.days * 86400 + elapsed.seconds
        for unit, size in _SHORT_UNITS:
            if seconds >= size:
                return _short_ago(unit, seconds // size, get_language())
    return f"{timesince(value, now, depth=1)} ago"


@functools.lru_cache(maxsize=256)
def _short_ago(unit: str, count: int, language: str) -> str:
    """ "5 minutes ago" (without a line break), kept per language: the translation machinery
    cost more than the rest of the cell."""
    return f"{avoid_wrapping(TIME_STRINGS[unit] % {'num': count})} ago"


@register.filter
def age(value: datetime | None) -> str:
    """`<time>` saying how long ago ("5 minutes ago"), local time and UTC on hover."""
    if not isinstance(value, datetime):
        return "—"
    return _age(value, timezone.get_current_timezone(), timezone.now())


def _age(value: datetime, zone: tzinfo, now: datetime, iso: str | None = None) -> SafeString:
    """`age` in `zone` at `now`, given once for a table's rows: format_html() and looking up
    the time zone cost more than the rest of the list's row (every value is escaped; `iso`,
    value.isoformat() if the caller has it, has only digits, letters and "-:.+")."""
    local = value.astimezone(zone)
    return mark_safe(  # noqa: S308 (every value is escaped)
        f'<time datetime="{iso or value.isoformat()}" title="{_to_minutes(local)} '
        f'{escape(local.tzname() or "")} · {_utc_title(value)}">{escape(_ago(value, now))}</time>'
    )


def _url_around(name: str, kwarg: str) -> tuple[str, str]:
    """The URL of `name` split around its one integer argument: joined with an id, it is
    what reverse() would say, without resolving it again for every row (nor for every
    table: it is kept per script prefix and URLconf)."""
    return _split_url(name, kwarg, get_script_prefix(), get_urlconf())


@functools.lru_cache(maxsize=16)
def _split_url(name: str, kwarg: str, prefix: str, urlconf: str | None) -> tuple[str, str]:
    marker = 987654321
    url = reverse(name, kwargs={kwarg: marker}, urlconf=urlconf)
    return tuple(url.split(str(marker)))  # type: ignore[return-value]


# The rows' severity, status and classification cells, kept per value: a page shows a
# handful of distinct values, and their words and escaping cost ~1 M instructions a page.
@functools.lru_cache(maxsize=256)
def _severity_cell(severity: str) -> str:
    words = escape(_words(Kind.SEVERITY, severity) or "Unspecified")
    return f'<td class="sev"><span class="badge {severity_class(severity)}">{words}</span></td>'


@functools.lru_cache(maxsize=256)
def _status_cell(status: str) -> str:
    return f'<td class="status">{escape(_words(Kind.STATUS, status) or "—")}</td>'


@functools.lru_cache(maxsize=256)
def _verdict_cell(classification: str, determination: str) -> str:
    verdict = escape(_words(Kind.CLASSIFICATION, classification) or "Not classified")
    detail = f": {escape(_words(Kind.DETERMINATION, determination))}" if determination else ""
    return f'<td class="verdict" title="{verdict}{detail}">{verdict}</td>'


@register.simple_tag
def incident_rows(incidents: Iterable[ListRow], list_query: str, acting: bool) -> SafeString:
    """The list's table rows. Written here rather than in the template: 50 rows of a dozen
    cells each cost the template engine more than the rest of the page (every value is
    escaped, as the template would)."""
    tenant_url = _url_around("tenants:detail", "tenant_pk")
    detail_url = _url_around("incidents:detail", "incident_id")
    back = f"?list={quote(list_query, safe='/')}" if list_query else ""
    zone, now = timezone.get_current_timezone(), timezone.now()
    rows = []
    for incident in incidents:
        pk, name = incident.pk, escape(incident.name)
        updated = incident.last_update_time
        iso = updated.isoformat()  # digits, letters and "-:.+": nothing to escape
        pick = (
            f'<td class="pick"><input type="checkbox" form="bulk-form" name="incident" '
            f'value="{pk}@{iso}" aria-label="Select {name}"></td>'
            if acting
            else ""
        )
        alerts = incident.alert_count
        rows.append(
            f'<tr data-incident="{pk}">{pick}{_severity_cell(incident.severity)}'
            f'<td class="tenant"><a href="{tenant_url[0]}{incident.tenant_id}{tenant_url[1]}">'
            f"{escape(incident.tenant_name)}</a></td>"
            f'<td class="name"><a href="{detail_url[0]}{pk}{detail_url[1]}{back}" '
            f'title="{name}">{name}</a> <span class="muted">#{incident.microsoft_id}</span></td>'
            f"{_status_cell(incident.status)}"
            f"{_verdict_cell(incident.classification, incident.determination)}"
            f'<td class="assignee">{escape(incident.assigned_to or "Unassigned")}</td>'
            f'<td class="alerts">{alerts}<span class="visually-hidden"> '
            f"alert{'' if alerts == 1 else 's'}</span></td>"
            f'<td class="updated">{_age(updated, zone, now, iso)}</td></tr>'
        )
    return mark_safe("\n".join(rows))  # noqa: S308 (every value is escaped above)


@register.simple_tag
def summary_chart_rows(summary: Any) -> SafeString:
    """The summary chart's numbers as table rows (day, then a linked count per severity),
    written here for the reason `incident_rows` is."""
    rows = []
    for day, counts in summary.chart_rows:
        cells = "".join(
            f'<td><a href="{escape(url)}">{n}</a></td>' if n else "<td>0</td>" for n, url in counts
        )
        rows.append(f'<tr><th scope="row">{escape(day)}</th>{cells}</tr>')
    return mark_safe("\n".join(rows))  # noqa: S308 (every value is escaped above)


@register.simple_tag
def summary_tenant_rows(rows: Iterable[Any], list_url: str, tenants_url: str) -> SafeString:
    """The summary's open incidents per tenant: a linked count per severity and the total."""
    html = []
    for row in rows:
        pk = row.tenant_pk
        cells = "".join(
            f'<td><a href="{list_url}?status=open&amp;tenant={pk}&amp;severity='
            f'{quote(severity, safe="/")}">{n:,}</a></td>'
            if n
            else "<td>0</td>"
            for severity, n in row.by_severity
        )
        html.append(
            f'<tr data-tenant="{pk}"><th scope="row"><a href="{tenants_url}{pk}/">'
            f"{escape(row.name)}</a></th>{cells}"
            f'<td><a href="{list_url}?status=open&amp;tenant={pk}">{row.total:,}</a></td></tr>'
        )
    return mark_safe("\n".join(html))  # noqa: S308 (every value is escaped above)
