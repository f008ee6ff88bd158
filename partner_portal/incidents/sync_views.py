"""The tenant page's sync controls: "Sync now" (POST) and the live status partial (GET)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from partner_portal.audit.events import client_ip, record
from partner_portal.incidents import tasks
from partner_portal.incidents.templatetags.sync_tags import SYNC_REQUESTED
from partner_portal.tenants.access import get_tenant_for_user


@require_POST
def sync_now(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    tenant = get_tenant_for_user(request.user, tenant_pk)
    if not tenant.is_syncable:
        messages.error(
            request,
            f"{tenant} cannot be synced: it must be enabled, with sync on and consent granted.",
        )
        return redirect("tenants:detail", tenant_pk=tenant.pk)
    full = request.POST.get("full") == "1"
    # One follow-up after a running sync (queued by it when it ends), not a run that would
    # only find the tenant busy and be recorded as skipped.
    if tenant.request_follow_up_sync(full=full, now=timezone.now()):
        messages.info(
            request,
            f"A sync of {tenant} is running now; "
            f"{'a full sync' if full else 'another one'} will follow it.",
        )
    else:
        # celery-types does not know delay_on_commit (Celery 5.4+).
        tasks.sync_tenant.delay_on_commit(  # type: ignore[attr-defined]
            tenant_pk=tenant.pk, full=full, requested=True
        )
        # Who asked, for the activity log; the status box polls until the run shows up.
        record(
            SYNC_REQUESTED,
            actor=request.user,
            tenant=tenant,
            target=f"tenant:{tenant.pk}",
            ip_address=client_ip(request),
            full=full,
        )
        messages.success(
            request, f"{'Full sync' if full else 'Sync'} of {tenant} requested: it starts shortly."
        )
    return redirect("tenants:detail", tenant_pk=tenant.pk)


def sync_status(request: HttpRequest, tenant_pk: int) -> HttpResponse:
    """The status partial alone, for htmx to poll while a run is going on."""
    # Look up first: a stranger gets 404 whatever the method, never a 405 that confirms.
    tenant = get_tenant_for_user(request.user, tenant_pk)
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return render(request, "incidents/_tenant_sync_status.html", {"tenant": tenant})
