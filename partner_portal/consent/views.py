from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from partner_portal.audit.events import client_ip, record
from partner_portal.consent import flow, tasks
from partner_portal.consent.forms import ConsentLinkForm, LinkFilterForm
from partner_portal.consent.models import ConsentLink
from partner_portal.error_pages import error_page
from partner_portal.microsoft.client import required_roles
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
    try:
        link = flow.create_link(
            tenant=tenant,
            created_by=request.user,
            expected_tenant=form.cleaned_data["expected_tenant"],
            ip_address=client_ip(request),
        )
    except flow.ExpectationRefused as exc:
        messages.error(request, exc.message)
        return redirect("tenants:detail", tenant_pk=tenant.pk)
    return _show_once(request, link)


def _show_once(request: HttpRequest, link: ConsentLink) -> HttpResponse:
    """The full link is shown once: the next view of the detail page takes the token out of
    the session (only its hash is stored)."""
    request.session[_SHOW_ONCE] = {"link": link.pk, "token": link.token}
    messages.success(
        request,
        "Consent link created: copy it (or the message) and send it to the customer now. "
        "It is shown only this once.",
    )
    return redirect("consent:detail", link_id=link.pk)


_SHOW_ONCE = "consent_link_shown_once"


def link_detail(request: HttpRequest, link_id: int) -> HttpResponse:
    link = _get_link_for_user(request, link_id)
    shown = request.session.get(_SHOW_ONCE) or {}
    url = message = ""
    if shown.get("link") == link.pk:
        del request.session[_SHOW_ONCE]
        url = flow.public_url(link, shown["token"])
        message = render_to_string(
            "consent/_message.txt",
            {"link": link, "url": url, "permissions": required_roles(link.tenant.source)},
            request=request,
        ).strip()
    return render(request, "consent/detail.html", {"link": link, "url": url, "message": message})


@require_POST
def link_replace(request: HttpRequest, link_id: int) -> HttpResponse:
    """A new link for one whose URL was lost (it cannot be shown again); the old one is
    revoked."""
    link = _get_link_for_user(request, link_id)
    if link.completed_at is not None:
        messages.info(request, "This link was already used: create a new one on the tenant page.")
        return redirect("consent:detail", link_id=link.pk)
    new = flow.replace_link(link=link, actor=request.user, ip_address=client_ip(request))
    return _show_once(request, new)


@require_POST
def link_confirm(request: HttpRequest, link_id: int) -> HttpResponse:
    """Bind the tenant a link without expectation returned (staff checked it is right)."""
    link = _get_link_for_user(request, link_id)
    problem = flow.confirm_binding(link=link, actor=request.user, ip_address=client_ip(request))
    if problem:
        messages.error(request, problem)
    else:
        messages.success(
            request, f"Tenant {link.returned_tenant_id} is attached; access check started."
        )
    return redirect("tenants:detail", tenant_pk=link.tenant_id)


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
        # Who asked, for the tenant's activity log.
        record(
            "tenant.access_check_requested",
            actor=request.user,
            tenant=tenant,
            target=f"tenant:{tenant.pk}",
            ip_address=client_ip(request),
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
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """A link that is not (or no longer) one of ours: the branded page, never Django's debug
    page, which with DEBUG on would list every URL pattern to the customer."""
    # A link whose last "/" was lost still opens (this route hides APPEND_SLASH's redirect).
    if rest and "/" not in rest and flow.link_for_token(rest) is not None:
        return redirect("consent:landing", token=rest)
    return error_page(request, 404)


@login_not_required
@never_cache
@require_GET
def landing(request: HttpRequest, token: str) -> HttpResponse:
    link = flow.link_for_token(token)
    if link is None:
        return not_found(request)
    if not link.is_usable:
        return _unavailable(request, link)
    flow.record_open(link=link, ip_address=client_ip(request))
    response = render(
        request,
        "consent/landing.html",
        {
            "link": link,
            "tenant": link.tenant,
            # The permission names; what each allows is told in the template.
            "permissions": required_roles(link.tenant.source),
            "expected_tenant_id": flow.expected_tenant_id(link),
            "token": token,
        },
    )
    _allow_form_to_microsoft(response, link)
    return response


@login_not_required
@never_cache
@require_POST
def start(request: HttpRequest, token: str) -> HttpResponse:
    link = flow.link_for_token(token)
    if link is None:
        return not_found(request)
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
    # "Open the consent page again" posts the state back (only the token's hash is stored,
    # so the page cannot link to the landing page): `retry` checks it and starts afresh.
    response = render(
        request,
        "consent/result.html",
        {
            "result": result,
            "msp_name": settings.MSP_NAME,
            "state": request.GET.get("state", "") if result.can_retry and result.link else "",
        },
        status=result.status,
    )
    if result.can_retry and result.link:
        _allow_form_to_microsoft(response, result.link)
    return response


@login_not_required
@never_cache
@require_POST
def retry(request: HttpRequest) -> HttpResponse:
    """Back to Microsoft with a link's still-valid state (after a cancel or an error)."""
    try:
        link = flow.verify_state(request.POST.get("state", ""))
    except flow.StateRejected as exc:
        result = flow.reject_callback(exc.reason, link=exc.link, ip_address=client_ip(request))
        return render(
            request,
            "consent/result.html",
            {"result": result, "msp_name": settings.MSP_NAME},
            status=result.status,
        )
    return redirect(flow.start_consent(link=link))


def _allow_form_to_microsoft(response: HttpResponse, link: ConsentLink) -> None:
    # The page's form is redirected to Microsoft: CSP's form-action covers redirects.
    parts = urlsplit(flow.consent_base_url(link.tenant))
    # django-csp reads this attribute (what its @csp_update decorator sets).
    response._csp_update = {"form-action": [f"{parts.scheme}://{parts.netloc}"]}  # type: ignore[attr-defined]
