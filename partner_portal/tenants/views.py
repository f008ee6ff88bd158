from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Max, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from partner_portal.audit.events import client_ip
from partner_portal.audit.models import AuditEvent
from partner_portal.microsoft import errors
from partner_portal.microsoft.claims import missing_roles
from partner_portal.microsoft.client import required_roles
from partner_portal.tenants import changes
from partner_portal.tenants.access import get_tenant_for_user, visible_tenants
from partner_portal.tenants.forms import TenantFilterForm, TenantForm
from partner_portal.tenants.models import Tenant, health_condition, with_health_rank

PAGE_SIZE = 25


def tenant_list(request: HttpRequest) -> HttpResponse:
    form = TenantFilterForm(request.GET or None)
    tenants = with_health_rank(visible_tenants(request.user))
    if form.is_valid():
        q = form.cleaned_data["q"].strip()
        if q:
            tenants = tenants.filter(
                Q(display_name__icontains=q)
                | Q(primary_domain__icontains=q)
                | Q(entra_tenant_id__icontains=q)
            )
        if form.cleaned_data["consent_state"]:
            tenants = tenants.filter(consent_state=form.cleaned_data["consent_state"])
        if form.cleaned_data["health"]:
            tenants = tenants.filter(health_condition(form.cleaned_data["health"]))
    tenants = tenants.order_by("health_rank", "display_name", "pk").prefetch_related("groups")
    page = Paginator(tenants, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = open_counts([tenant.pk for tenant in page])
    for tenant in page:
        # Shown beside each tenant; not fields of the model.
        tenant.open_high, tenant.open_medium = counts.get(tenant.pk, (0, 0))  # type: ignore[attr-defined]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "tenants/list.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


def open_counts(tenant_pks: list[int]) -> dict[int, tuple[int, int]]:
    """{tenant id: (open High, open Medium incidents)} for one page of tenants, summed from
    the maintained counts (incidents/counters.py: a few rows per tenant; counting the
    incidents took ~0.6 s a page at 1M incidents)."""
    is_open = Q(incident_counts__n__gt=0) & ~Q(incident_counts__status="Resolved")
    rows = (
        Tenant.objects.filter(pk__in=tenant_pks)
        .annotate(
            high=Sum("incident_counts__n", filter=is_open & Q(incident_counts__severity="High")),
            medium=Sum(
                "incident_counts__n", filter=is_open & Q(incident_counts__severity="Medium")
            ),
        )
        .values_list("pk", "high", "medium")
    )
    return {pk: (high or 0, medium or 0) for pk, high, medium in rows}


# How Entra's "API permissions" page names each source's API.
PERMISSION_API = {"defender": "Microsoft Threat Protection", "graph": "Microsoft Graph"}


def tenant_detail(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    tenant = get_tenant_for_user(request.user, tenant_pk)
    required = required_roles(tenant.source)
    missing = missing_roles(tenant.granted_roles, required)
    context = {
        "tenant": tenant,
        "permission_api": PERMISSION_API[tenant.source],
        "sources": Tenant.Source.choices,
        "required": [{"name": r, "granted": r not in missing} for r in required],
        "extra_roles": [r for r in tenant.granted_roles if r not in required],
        "consent_error": _describe(tenant.consent_error_class),
        "sync_runs": tenant.sync_runs.all()[:10],
        "sync_problems": tenant.sync_problems.all()[:20],
        "sync_problem_count": tenant.sync_problems.count(),
        "links": _links(tenant),
        "awaiting": tenant.consent_links.filter(awaiting_confirmation=True).order_by(
            "-completed_at"
        ),
        "events": AuditEvent.objects.filter(tenant=tenant).select_related("actor")[:20],
    }
    return render(request, "tenants/detail.html", context)


def _links(tenant: Tenant) -> list:
    """The tenant's latest consent links; once the tenant is consented, a link still open
    from before the consent that counted is marked `superseded` (the customer need not use it)."""
    links = list(tenant.consent_links.select_related("created_by")[:20])
    if tenant.consent_state != Tenant.ConsentState.CONSENTED:
        return links
    granted = tenant.consent_links.filter(outcome="granted").aggregate(last=Max("completed_at"))
    for link in links:
        link.superseded = bool(  # type: ignore[attr-defined]
            granted["last"] and link.status == "active" and link.created_at < granted["last"]
        )
    return links


def _describe(kind: str) -> type[errors.MicrosoftError] | None:
    return errors.describe(kind) if kind else None


def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        tenant = changes.create_tenant(form=form, actor=request.user, ip_address=client_ip(request))
        messages.success(request, f"{tenant.display_name} was added. Now send a consent link.")
        return redirect("tenants:detail", tenant_pk=tenant.pk)
    return render(request, "tenants/form.html", {"form": form})


def tenant_edit(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    tenant = get_tenant_for_user(request.user, tenant_pk)
    form = TenantForm(request.POST or None, instance=tenant, user=request.user)
    if request.method == "POST" and form.is_valid():
        if form.changes_entra_tenant_id and request.POST.get("confirm_tenant_id") != "yes":
            return render(
                request,
                "tenants/confirm_tenant_id.html",
                {
                    "tenant": tenant,
                    "new_id": form.cleaned_data["entra_tenant_id"],
                    "incident_count": tenant.incidents.count(),
                    "posted": [
                        (k, v)
                        for k in request.POST
                        for v in request.POST.getlist(k)
                        if k not in ("csrfmiddlewaretoken", "confirm_tenant_id")
                    ],
                },
            )
        changes.update_tenant(form=form, actor=request.user, ip_address=client_ip(request))
        messages.success(request, "Changes saved.")
        return redirect("tenants:detail", tenant_pk=tenant.pk)
    return render(request, "tenants/form.html", {"form": form, "tenant": tenant})


@require_POST
def tenant_source(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    """Switch where a tenant's incidents are read (superusers): a full re-sync follows."""
    tenant = get_tenant_for_user(request.user, tenant_pk)
    if not request.user.is_superuser:
        raise PermissionDenied
    source = request.POST.get("source", "")
    if source not in Tenant.Source.values:
        messages.error(request, "Unknown incident source.")
    elif changes.switch_source(
        tenant=tenant, source=source, actor=request.user, ip_address=client_ip(request)
    ):
        messages.success(
            request,
            f"{tenant.display_name} now reads incidents from the {tenant.get_source_display()}: "
            "its access is being checked, then every incident is read again.",
        )
    else:
        messages.info(request, "The tenant already uses that source.")
    return redirect("tenants:detail", tenant_pk=tenant.pk)


@require_POST
def tenant_toggle(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    tenant = get_tenant_for_user(request.user, tenant_pk)
    enable = not tenant.is_active
    changes.set_enabled(
        tenant=tenant, enabled=enable, actor=request.user, ip_address=client_ip(request)
    )
    if enable:
        messages.success(request, f"{tenant.display_name} is enabled.")
    else:
        messages.warning(request, f"{tenant.display_name} is disabled: it will not be synced.")
    return redirect("tenants:detail", tenant_pk=tenant.pk)
