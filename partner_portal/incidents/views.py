from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from django_htmx.http import push_url
from django_htmx.middleware import HtmxDetails

from partner_portal.incidents import dashboard
from partner_portal.incidents.filters import SORTS, IncidentFilter
from partner_portal.tenants.access import sees_every_tenant, visible_tenants


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (for the type checker)."""

    htmx: HtmxDetails


# Query-string keys that pick a page rather than filter the list.
PAGE_KEYS = ("after", "before", "last")
SUMMARY_TENANT_ROWS = 50
# The list's columns: the page query reads nothing else (raw JSON and search text are big).
LIST_FIELDS = (
    "tenant__display_name",
    "microsoft_id",
    "name",
    "severity",
    "severity_rank",
    "status",
    "classification",
    "determination",
    "assigned_to",
    "alert_count",
    "created_time",
    "last_update_time",
)


def _filter(request: HttpRequest) -> IncidentFilter:
    return IncidentFilter(
        request.GET, queryset=dashboard.visible_incidents(request.user), request=request
    )


def _query(params: QueryDict, **extra: str | None) -> str:
    """The query string of `params` without paging keys, plus `extra` (empty values dropped)."""
    pairs = [
        (key, value)
        for key, values in params.lists()
        if key not in PAGE_KEYS and key not in extra
        for value in values
        if value != ""
    ]
    pairs += [(key, value) for key, value in extra.items() if value]
    return urlencode(pairs)


def _url(name: str, query: str) -> str:
    return f"{reverse(name)}?{query}" if query else reverse(name)


def _sort_links(params: QueryDict, current: str) -> dict[str, dict[str, str]]:
    """Per sortable column: the URL that sorts by it (toggling direction) and aria-sort."""
    links = {}
    for name in dashboard.SORT_KEYS:
        if current.lstrip("-") == name:
            target = name if current.startswith("-") else f"-{name}"
            aria = "descending" if current.startswith("-") else "ascending"
        else:
            target, aria = f"-{name}", "none"
        links[name] = {"url": _url("incidents:list", _query(params, sort=target)), "aria": aria}
    return links


@require_GET
def incident_list(request: HtmxHttpRequest) -> HttpResponse:
    filterset = _filter(request)
    incidents = filterset.qs
    sort = filterset.chosen_sort
    page = dashboard.keyset_page(
        incidents.select_related("tenant").only(*LIST_FIELDS),
        sort=sort,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        last=request.GET.get("last") == "1",
    )
    count, count_more = dashboard.capped_count(incidents)
    opened_at = timezone.now()
    query = _query(request.GET)
    context = {
        "filter": filterset,
        "page": page,
        "count": count,
        "count_more": count_more,
        "sort": sort,
        "sort_label": dict(SORTS)[sort].lower(),
        "sort_links": _sort_links(request.GET, sort),
        "first_url": _url("incidents:list", query),
        "last_url": _url("incidents:list", _query(request.GET, last="1")),
        "next_url": _url("incidents:list", _query(request.GET, after=page.next_cursor))
        if page.has_next
        else None,
        "previous_url": _url("incidents:list", _query(request.GET, before=page.previous_cursor))
        if page.has_previous
        else None,
        "export_url": _url("incidents:export", query),
        "new_count_url": _url(
            "incidents:new_count", _query(request.GET, since=opened_at.isoformat())
        ),
        "poll_seconds": settings.DASHBOARD_POLL_SECONDS,
    }
    # A history restore (back button after the cache is gone) needs the whole page.
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "incidents/_table.html", context)
        # The address bar gets the filters without the form's empty fields.
        kept = [(k, v) for k, values in request.GET.lists() for v in values if v != ""]
        return push_url(response, _url("incidents:list", urlencode(kept)))
    # The form is written out in the template: widget templates (one include per <option>)
    # cost more than the rest of the page.
    form = filterset.form
    context["select_fields"] = [
        form[name] for name in ("status", "classification", "determination", "updated", "sort")
    ]
    context["date_fields"] = [
        form[name] for name in ("updated_from", "updated_to", "created_from", "created_to")
    ]
    # Tenant options are built here: even a template loop costs tens of milliseconds for a
    # thousand tenants (the stdlib's escape() is what Django's escape() wraps).
    chosen = set(form["tenant"].value() or [])
    context["tenant_options"] = mark_safe(  # noqa: S308 (every value is escaped)
        "".join(
            f'<option value="{pk}"{" selected" if str(pk) in chosen else ""}>'
            f"{escape(name)}</option>"
            for pk, name in visible_tenants(request.user).values_list("pk", "display_name")
        )
    )
    return render(request, "incidents/list.html", context)


@require_GET
def incident_new_count(request: HttpRequest) -> HttpResponse:
    """The "N new or updated since you opened this page" fragment, polled by the list."""
    since = parse_datetime(request.GET.get("since", ""))
    count, more = 0, False
    if since is not None and timezone.is_aware(since):
        count, more = dashboard.new_since_count(_filter(request).qs, since)
    context = {
        "count": count,
        "more": more,
        "list_url": _url("incidents:list", _query(request.GET, since="")),
    }
    # Nothing at all when nothing changed: the indicator hides itself with CSS :empty.
    html = render_to_string("incidents/_new_count.html", context, request=request).strip()
    return HttpResponse(html)


@require_GET
def incident_export(request: HttpRequest) -> StreamingHttpResponse:
    filterset = _filter(request)
    lines = dashboard.export_lines(filterset.qs, sort=filterset.chosen_sort)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = f"incidents-{timezone.now():%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def incident_summary(request: HttpRequest) -> HttpResponse:
    tenant_names = dict(visible_tenants(request.user).values_list("pk", "display_name"))
    summary, counted_at = dashboard.cached_summary(
        tenant_names, everyone=sees_every_tenant(request.user)
    )
    return render(
        request,
        "incidents/summary.html",
        {
            "summary": summary,
            "counted_at": counted_at,
            # Reversed once: {% url %} in every cell of the tenant table costs ~20 ms.
            "list_url": reverse("incidents:list"),
            # The most severe first; the rest are a click away on the list.
            "tenant_rows": summary.tenants[:SUMMARY_TENANT_ROWS],
            "more_tenants": max(0, len(summary.tenants) - SUMMARY_TENANT_ROWS),
            "quiet_tenants": len(tenant_names) - len(summary.tenants),
        },
    )


@require_GET
def incident_detail(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = get_object_or_404(
        dashboard.visible_incidents(request.user).select_related("tenant"), pk=incident_id
    )
    alerts = list(incident.alerts.all())
    return render(
        request,
        "incidents/detail.html",
        {
            "incident": incident,
            "alerts": alerts,
            "devices": dashboard.devices_of(alerts),
            "entity_groups": dashboard.entities_by_type(alerts),
            "evidence": dashboard.evidence_of(alerts),
            "raw_json": json.dumps(incident.raw, indent=2, ensure_ascii=False),
        },
    )
