from __future__ import annotations

import functools
import json
from html import escape
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url
from django_htmx.middleware import HtmxDetails

from partner_portal.incidents import dashboard, saved_views
from partner_portal.incidents.filters import DEFAULT_SORT, SORTS, IncidentFilter
from partner_portal.incidents.forms import PreferenceForm, SavedViewForm
from partner_portal.incidents.models import Incident, Preference, SavedView
from partner_portal.incidents.time_zones import SESSION_KEY
from partner_portal.tenants.access import sees_every_tenant, visible_tenants
from partner_portal.tenants.models import tenant_choices


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (for the type checker)."""

    htmx: HtmxDetails


# Query-string keys that pick a page rather than filter the list.
PAGE_KEYS = ("after", "before", "last")
SUMMARY_TENANT_ROWS = 50

MORE_SELECTS = ("classification", "determination", "updated")
MORE_DATES = ("updated_from", "updated_to", "created_from", "created_to")
MORE_FILTERS = (*MORE_SELECTS, "assigned_to", *MORE_DATES)


def _filled(params: QueryDict) -> QueryDict:
    """`params` without empty values: a form's blank fields ("All tenants") filter nothing."""
    kept = QueryDict(mutable=True)
    for key, values in params.lists():
        kept.setlist(key, [value for value in values if value != ""])
    return kept


def _filter(request: HttpRequest, params: QueryDict | None = None) -> IncidentFilter:
    return IncidentFilter(
        _filled(request.GET if params is None else params),
        queryset=_visible_incidents(request),
        request=request,
    )


def _visible_incidents(request: HttpRequest) -> QuerySet[Incident]:
    """The incidents the user may see, built once per request: the list's filter set and
    each view's start from it (building the access rule's subquery again cost ~0.3 ms each).
    A filter set filters a copy (`.all()`), never this queryset itself."""
    visible = getattr(request, "_visible_incidents", None)
    if visible is None:
        visible = dashboard.visible_incidents(request.user)
        request._visible_incidents = visible  # type: ignore[attr-defined]
    return visible


def _normal_pairs(params: QueryDict) -> list[tuple[str, str]]:
    return [(k, v) for k, values in params.lists() for v in values if v != ""]


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


def _list_all() -> str:
    """The whole list ("Clear"), even for someone whose default view is a filtered one."""
    return _url("incidents:list", f"sort={DEFAULT_SORT}")


def _url(name: str, query: str) -> str:
    path = _path(name, get_script_prefix(), get_urlconf())
    return f"{path}?{query}" if query else path


@functools.lru_cache(maxsize=16)
def _path(name: str, prefix: str, urlconf: str | None) -> str:
    """reverse(name) under the script prefix and URLconf in the key: the list page asks for
    a dozen URLs, and reverse() cost ~0.1 ms each time."""
    return reverse(name, urlconf=urlconf)


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


def _views(request: HttpRequest, current: str) -> list[dict[str, Any]]:
    """The built-in views and the user's saved ones: name, URL, the incidents it holds (to
    be counted with the list's own count) and whether the list shows it now."""
    shown = _normal(current)
    user: Any = request.user  # signed in (LoginRequiredMiddleware)
    views: list[dict[str, Any]] = [
        {"name": name, "query": query, "saved": None} for name, query in saved_views.built_in(user)
    ]
    views += [
        {"name": view.name, "query": view.query, "saved": view}
        for view in SavedView.objects.filter(user=user)[: saved_views.MAX_SHOWN]
    ]
    for view in views:
        view["url"] = _url("incidents:list", view["query"])
        view["incidents"] = _filter(request, QueryDict(view["query"])).qs
        view["current"] = _normal(view["query"]) == shown
    return views


def _normal(query: str) -> list[tuple[str, str]]:
    """A query string's filters, comparable whatever their order (paging keys left out)."""
    return sorted(
        (key, value)
        for key, values in QueryDict(query).lists()
        if key not in PAGE_KEYS
        for value in values
        if value != "" and (key, value) != ("sort", DEFAULT_SORT)
    )


@require_GET
def incident_list(request: HtmxHttpRequest) -> HttpResponse:
    if not request.GET and not request.htmx:
        user: Any = request.user  # signed in (LoginRequiredMiddleware)
        default = SavedView.objects.filter(user=user, is_default=True).first()
        if default is not None and default.query:
            return redirect(_url("incidents:list", default.query))
    filterset = _filter(request)
    incidents = filterset.qs
    sort = filterset.chosen_sort
    last = request.GET.get("last") == "1"
    page = dashboard.keyset_page(
        incidents,
        sort=sort,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        last=last,
        tenants_apart=filterset.keyed_search,
    )
    # A history restore (back button after the cache is gone) needs the whole page.
    partial = bool(request.htmx and not request.htmx.history_restore_request)
    views = [] if partial else _views(request, _query(request.GET))
    # The count, the page's position and each view's count: one query.
    position = None if last else dashboard.position_query(incidents, sort=sort, page=page)
    (count, count_more), (before, before_more), *view_counts = dashboard.capped_counts(
        [incidents, position, *(view["incidents"] for view in views)]
    )
    for view, (view_count, view_more) in zip(views, view_counts, strict=True):
        view["count"], view["more"] = view_count, view_more
    if last:
        # The last page holds what is left over after full pages, so that paging back from
        # it lands on the same pages as paging forward from the first (a full first page).
        if not count_more and page.incidents:
            size = count % dashboard.PAGE_SIZE or dashboard.PAGE_SIZE
            page = dashboard.last_page(page, size, fields_of=sort)
        before, before_more = count - len(page.incidents), count_more
    opened_at = timezone.now()
    query = _query(request.GET)
    context = {
        "filter": filterset,
        "page": page,
        "count": count,
        "count_more": count_more,
        "first_row": before + 1,
        "last_row": before + len(page.incidents),
        "position_known": not before_more,
        # The list's own address (paging included): the detail page's way back.
        "list_query": urlencode(_normal_pairs(request.GET)),
        "save_query": query,
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
    if partial:
        response = render(request, "incidents/_table.html", context)
        # The address bar gets the filters without the form's empty fields.
        return push_url(response, _url("incidents:list", str(context["list_query"])))
    saved = [view["saved"] for view in views if view["saved"]]
    for view in saved:
        view.url = _url("incidents:list", view.query)
    context["views"], context["saved_views"] = views, saved
    # The form is written out in the template: widget templates (one include per <option>)
    # cost more than the rest of the page.
    form = filterset.form
    # The most used filters in one row; the rest behind "More filters", open when in use.
    # Their options are written here, like the tenants' below: a template loop over ~60
    # options costs more than the rest of the form.
    context["bar_fields"] = [
        (form[name], _field_options(form[name])) for name in ("status", "sort")
    ]
    context["select_fields"] = [
        (form[name], _field_options(form[name]))
        for name in ("classification", "determination", "updated")
    ]
    chosen_severities = form["severity"].value() or []
    context["severity_boxes"] = mark_safe(  # noqa: S308 (every value is escaped)
        "".join(
            f'<label for="id_severity_{i}"><input type="checkbox" name="severity" '
            f'value="{escape(value)}" id="id_severity_{i}"'
            f"{' checked' if value in chosen_severities else ''}>{escape(label)}</label>"
            for i, (value, label) in enumerate(form["severity"].field.choices)
        )
    )
    context["date_fields"] = [form[name] for name in MORE_DATES]
    context["more_open"] = any(request.GET.get(name) for name in MORE_FILTERS)
    # Tenant options are built here: even a template loop costs tens of milliseconds for a
    # thousand tenants. The user's tenants are the form field's (built once a request).
    chosen = form["tenant"].value() or []
    context["several_tenants"] = len(set(chosen)) > 1
    choices = tenant_choices(form.fields["tenant"].queryset)
    context["tenant_options"] = _options(tuple(choices), chosen)
    return render(request, "incidents/list.html", context)


def _field_options(field: Any) -> str:
    """A select's options, the chosen one selected (what the template loop wrote)."""
    chosen = field.value()
    return _options(tuple(field.field.choices), [] if chosen is None else [chosen])


def _options(choices: tuple[tuple[Any, str], ...], chosen: list[str]) -> str:
    """<option>s of `choices`, those whose value is in `chosen` selected."""
    html = _unselected_options(choices)
    for value in chosen:
        # Values are escaped alike, so this finds exactly the options of this value.
        option = f'<option value="{escape(str(value))}">'
        html = html.replace(option, f"{option[:-1]} selected>")
    return mark_safe(html)  # noqa: S308 (every value is escaped)


@functools.lru_cache(maxsize=32)
def _unselected_options(choices: tuple[tuple[Any, str], ...]) -> str:
    """The options, kept per set of choices (labels included): a superuser's thousand
    escaped tenant names cost ~5 M instructions a page, the same text every time."""
    return "".join(
        f'<option value="{escape(str(value))}">{escape(str(label))}</option>'
        for value, label in choices
    )


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
def incident_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    filterset = _filter(request)
    if any(name != "sort" for name in filterset.errors):
        # Fail closed: an invalid filter exports nothing but the reason.
        reasons = "; ".join(f"{k}: {' '.join(v)}" for k, v in filterset.errors.items())
        return HttpResponseBadRequest(f"Invalid filter: {reasons}", content_type="text/plain")
    lines = dashboard.export_lines(filterset.qs, sort=filterset.chosen_sort)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = f"incidents-{timezone.now():%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def incident_summary(request: HttpRequest) -> HttpResponse:
    tenant_names = dict(visible_tenants(request.user).values_list("pk", "display_name"))
    summary, counted_at = dashboard.cached_summary(
        tenant_names, everyone=sees_every_tenant(request.user), rows=SUMMARY_TENANT_ROWS
    )
    return render(
        request,
        "incidents/summary.html",
        {
            "summary": summary,
            "counted_at": counted_at,
            # Reversed once: {% url %} in every cell of the tenant table costs ~20 ms.
            "list_url": reverse("incidents:list"),
            "tenants_url": reverse("tenants:list"),
            # The most severe first; the rest are a click away on the list.
            "tenant_rows": summary.tenants,
            "more_tenants": summary.tenants_with_open - len(summary.tenants),
            "quiet_tenants": len(tenant_names) - summary.tenants_with_open,
        },
    )


@require_GET
def incident_detail(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = get_object_or_404(
        dashboard.visible_incidents(request.user).select_related("tenant"), pk=incident_id
    )
    alerts = list(incident.alerts.all())
    # Back to the list as the user left it: the list's query string, re-encoded here so that
    # the link can only ever point at the list.
    back = urlencode(_normal_pairs(QueryDict(request.GET.get("list", ""))))
    return render(
        request,
        "incidents/detail.html",
        {
            "incident": incident,
            "back_url": _url("incidents:list", back),
            "alerts": alerts,
            "devices": dashboard.devices_of(alerts),
            "entity_groups": dashboard.entities_by_type(alerts),
            "evidence": dashboard.evidence_of(alerts),
            "raw_json": json.dumps(incident.raw, indent=2, ensure_ascii=False),
        },
    )


# --- Saved views and preferences -----------------------------------------------------------


@require_POST
def view_save(request: HttpRequest) -> HttpResponse:
    form = SavedViewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the view a name of at most 80 characters.")
        return redirect(_url("incidents:list", request.POST.get("query", "")))
    view = saved_views.save(
        user=request.user,
        name=form.cleaned_data["name"],
        query=form.cleaned_data["query"],
        default=form.cleaned_data["default"],
    )
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(_url("incidents:list", view.query) if view.query else _list_all())


@require_POST
def view_delete(request: HttpRequest, view_id: int) -> HttpResponse:
    view = get_object_or_404(SavedView, pk=view_id, user=request.user)
    view.delete()
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect(_list_all())


@require_POST
def view_default(request: HttpRequest, view_id: int) -> HttpResponse:
    view = get_object_or_404(SavedView, pk=view_id, user=request.user)
    if view.is_default:
        saved_views.make_default(user=request.user, view=None)
        messages.success(request, f"“{view.name}” is no longer your default view.")
    else:
        saved_views.make_default(user=request.user, view=view)
        messages.success(request, f"“{view.name}” opens when you visit the incident list.")
    return redirect(_url("incidents:list", view.query) if view.query else _list_all())


def preferences(request: HttpRequest) -> HttpResponse:
    """The time zone times are shown in. The browser's is saved on a first visit
    (static/js/time-zone.js); this page changes it."""
    user: Any = request.user  # signed in (LoginRequiredMiddleware)
    preference = Preference.objects.filter(user=user).first() or Preference(user=user)
    form = PreferenceForm(request.POST or None, instance=preference)
    if request.method == "POST" and form.is_valid():
        form.save()
        request.session[SESSION_KEY] = preference.time_zone
        if request.headers.get("X-Time-Zone-Auto") == "1":
            return HttpResponse(status=204)
        messages.success(request, f"Times are now shown in {preference.time_zone}.")
        return redirect("incidents:preferences")
    if request.headers.get("X-Time-Zone-Auto") == "1":
        return HttpResponse(status=400)
    return render(request, "incidents/preferences.html", {"form": form, "now": timezone.now()})
