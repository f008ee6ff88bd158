from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from partner_portal.audit.events import client_ip
from partner_portal.consent import flow, tasks
from partner_portal.consent.forms import ConsentLinkForm, LinkFilterForm
from partner_portal.consent.models import ConsentLink
from partner_portal.tenants.access import get_tenant_for_user, visible_tenant_pks

PAGE_SIZE = 25


def _get_link_for_user(request: HttpRequest, link_id: int) -> ConsentLink:
    links = ConsentLink.objects.filter(tenant__in=visible_tenant_pks(request.user))
    return get_object_or_404(links.select_related("tenant", "created_by"), pk=link_id)


# --- Staff pages ---------------------------------------------------------------------------


def link_list(request: HttpRequest) -> HttpResponse:
    form = LinkFilterForm(request.GET or None)
    links = ConsentLink.objects.filter(tenant__in=visible_tenant_pks(request.user))
    if form.is_valid() and form.cleaned_data["status"]:
        links = links.filter(ConsentLink.status_condition(form.cleaned_data["status"]))
    links = links.select_related("tenant", "created_by").order_by("-created_at", "-pk")
    page = Paginator(links, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request, "consent/links.html", {"form": form, "page": page, "query": query.urlencode()}
    )


@require_POST
def link_create(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    tenant = get_tenant_for_user(request.user, tenant_pk)
    form = ConsentLinkForm(request.POST, tenant=tenant)
    if not form.is_valid():
        for error in form.errors.get("expected_tenant", []):
            messages.error(request, str(error))
        return redirect("tenants:detail", tenant_pk=tenant.pk)
    link = flow.create_link(
        tenant=tenant,
        created_by=request.user,
        expected_tenant=form.cleaned_data["expected_tenant"],
        ip_address=client_ip(request),
    )
    messages.success(request, "Consent link created: copy it and send it to the customer.")
    return redirect("consent:detail", link_id=link.pk)


def link_detail(request: HttpRequest, link_id: int) -> HttpResponse:
    link = _get_link_for_user(request, link_id)
    url = flow.public_url(link)
    message = render_to_string(
        "consent/_message.txt",
        {"link": link, "url": url, "permissions": flow.required_permissions(link.tenant)},
        request=request,
    )
    return render(
        request,
        "consent/detail.html",
        {"link": link, "url": url, "message": message.strip()},
    )


@require_POST
def check_access(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    """The tenant page's "Check access" button: the verification task, after commit."""
    tenant = get_tenant_for_user(request.user, tenant_pk)
    if tenant.entra_tenant_id is None:
        messages.error(request, "The tenant ID is not known yet: send a consent link first.")
    else:
        # celery-types does not know delay_on_commit (Celery 5.4+).
        tasks.verify_tenant_access.delay_on_commit(  # type: ignore[attr-defined]
            tenant_pk=tenant.pk
        )
        messages.info(request, "Access check started; refresh this page in a moment.")
    return redirect("tenants:detail", tenant_pk=tenant.pk)


@require_POST
def link_revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    link = _get_link_for_user(request, link_id)
    if flow.revoke_link(link=link, actor=request.user, ip_address=client_ip(request)):
        messages.success(request, "The link is revoked: it no longer works.")
    else:
        messages.info(request, "This link was already used or revoked.")
    return redirect("consent:detail", link_id=link.pk)


# --- Public pages (the customer's administrator, not signed in) ------------------------------


def _unavailable(request: HttpRequest, link: ConsentLink) -> HttpResponse:
    return render(request, "consent/unavailable.html", {"link": link}, status=410)


@login_not_required
@never_cache
@require_GET
def landing(request: HttpRequest, token: str) -> HttpResponse:
    link = get_object_or_404(ConsentLink.objects.select_related("tenant"), token=token)
    if not link.is_usable:
        return _unavailable(request, link)
    flow.record_open(link=link, ip_address=client_ip(request))
    return render(
        request,
        "consent/landing.html",
        {
            "link": link,
            "tenant": link.tenant,
            "permissions": flow.required_permissions(link.tenant),
            "expected_tenant": flow.expected_tenant(link),
        },
    )


@login_not_required
@never_cache
@require_POST
def start(request: HttpRequest, token: str) -> HttpResponse:
    link = get_object_or_404(ConsentLink.objects.select_related("tenant"), token=token)
    if not link.is_usable:
        return _unavailable(request, link)
    return redirect(flow.start_consent(link=link))


@login_not_required
@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    result = flow.handle_callback(
        params=request.GET,
        query_length=len(request.META.get("QUERY_STRING", "")),
        ip_address=client_ip(request),
    )
    retry_url = flow.public_url(result.link) if result.can_retry and result.link else ""
    return render(
        request,
        "consent/result.html",
        {"result": result, "retry_url": retry_url, "msp_name": settings.MSP_NAME},
        status=result.status,
    )
