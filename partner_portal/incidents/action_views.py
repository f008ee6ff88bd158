"""Working incidents from the portal: one action on the incident page, bulk actions from the
list, and a bulk action's progress. The workflow is in incidents/actions.py.

Access: the incident (or every incident of a job) must be visible to the user (404
otherwise, before anything else), and acting needs the portal permission
`incidents.act_on_incident` (403 otherwise), checked here, not only in templates.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from partner_portal.audit.events import client_ip
from partner_portal.incidents import actions, dashboard, tasks
from partner_portal.incidents.models import ActionOutcome, IncidentActionJob
from partner_portal.incidents.templatetags.incident_actions import actions_context
from partner_portal.microsoft import errors
from partner_portal.tenants.access import visible_tenant_pks
from partner_portal.tenants.models import Tenant

MAX_BULK = 500


def _require_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(actions.PERMISSION):
        raise PermissionDenied("You may not update incidents.")


def _queue(
    request: HttpRequest, *, action: str, values: dict, incidents: list, loaded: dict
) -> IncidentActionJob:
    job = actions.create_job(
        user=request.user, action=action, values=values, incidents=incidents, loaded=loaded
    )
    # celery-types does not know delay_on_commit (Celery 5.4+).
    tasks.run_action_job.delay_on_commit(job_pk=job.pk)  # type: ignore[attr-defined]
    return job


@require_POST
def incident_act(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = get_object_or_404(
        dashboard.visible_incidents(request.user).select_related("tenant"), pk=incident_id
    )
    _require_permission(request)
    action = request.POST.get("action", "")
    expected = parse_datetime(request.POST.get("expected", ""))
    confirm = request.POST.get("confirm") == "1"
    try:
        values = actions.clean_values(action, request.POST)
    except actions.InvalidAction as exc:
        result = actions.Result("refused", str(exc))
    else:
        try:
            result = actions.act(
                incident=incident,
                user=request.user,
                action=action,
                values=values,
                expected=expected,
                confirm=confirm,
                ip_address=client_ip(request),
            )
        except errors.Transient as exc:
            # Microsoft (or the tenant's budget) asks to wait, or is down for a moment: the
            # action goes to a job that retries it, the page says so.
            # The job compares with what the user loaded (nothing when they confirmed).
            loaded = {incident.pk: expected} if expected and not confirm else {}
            job = _queue(request, action=action, values=values, incidents=[incident], loaded=loaded)
            wait = f" in about {exc.retry_after} s" if isinstance(exc, errors.Throttled) else ""
            result = actions.Result(
                actions.QUEUED, f"Queued: Microsoft asked to wait; the portal retries{wait}."
            )
            result.job = job  # type: ignore[attr-defined]
        incident.refresh_from_db()
    context = actions_context(request, incident)
    context.update(
        result=result,
        action=action,
        pending=request.POST if result.outcome == "conflict" else None,
    )
    if getattr(request, "htmx", False):
        response = render(request, "incidents/_actions.html", context)
        # The incident card above shows the new values too (an out-of-band swap).
        fields = render_to_string(
            "incidents/_fields.html", {"incident": incident, "oob": True}, request=request
        )
        response.content += fields.encode()
        return response
    level = messages.SUCCESS if result.outcome == "done" else messages.WARNING
    text = result.message
    if result.changed:
        text += " " + "; ".join(f"{f}: {a} → {b}" for f, a, b in result.changed)
    if result.outcome == "conflict":
        # Without JavaScript the confirmation is a page of its own.
        return render(request, "incidents/action_confirm.html", context)
    messages.add_message(request, level, text)
    # Done on the incident Microsoft merged this one into: that is the page to see.
    shown = result.merged_into or incident
    return redirect("incidents:detail", incident_id=shown.pk)


@require_POST
def bulk_act(request: HttpRequest) -> HttpResponse:
    _require_permission(request)
    action = request.POST.get("action", "")
    # Each box carries the incident's lastUpdateTime as the list showed it.
    loaded = dict(
        list(actions.parse_selection(request.POST.getlist("incident")).items())[:MAX_BULK]
    )
    incidents = list(
        dashboard.visible_incidents(request.user).filter(pk__in=loaded).select_related("tenant")
    )
    try:
        values = actions.clean_values(action, request.POST)
    except actions.InvalidAction as exc:
        messages.error(request, str(exc))
        return redirect("incidents:list")
    if not incidents:
        messages.error(request, "Select at least one incident.")
        return redirect("incidents:list")
    job = _queue(request, action=action, values=values, incidents=incidents, loaded=loaded)
    return redirect("incidents:action_job", job_id=job.pk)


@require_POST
def confirm_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """ "Apply anyway" for the incidents a job found changed since the user loaded them: a
    new job with the same action, compared with the values the job page showed."""
    job = _job_for_user(request, job_id)  # 404 before 403: a URL confirms nothing
    _require_permission(request)
    shown = actions.parse_selection(request.POST.getlist("incident"))
    conflicts = job.items.filter(outcome=ActionOutcome.CONFLICT, incident__in=list(shown))
    incidents = [item.incident for item in conflicts.select_related("incident__tenant")]
    if not incidents:
        messages.error(request, "None of these incidents is waiting for a confirmation.")
        return redirect("incidents:action_job", job_id=job.pk)
    again = _queue(request, action=job.action, values=job.values, incidents=incidents, loaded=shown)
    return redirect("incidents:action_job", job_id=again.pk)


def _job_for_user(request: HttpRequest, job_id: int) -> IncidentActionJob:
    # Visible when every incident of the job is in a tenant the user sees.
    jobs = IncidentActionJob.objects.exclude(
        items__incident__tenant__in=_hidden_tenants(request)
    ).filter(items__isnull=False)
    return get_object_or_404(jobs.distinct(), pk=job_id)


def _hidden_tenants(request: HttpRequest):
    return Tenant.objects.exclude(pk__in=visible_tenant_pks(request.user)).values("pk")


@require_GET
def action_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_for_user(request, job_id)
    items = list(job.items.select_related("incident__tenant"))
    counts = job.counts()
    context = {
        "job": job,
        "items": items,
        "counts": counts,
        "total": len(items),
        "finished": len(items) - counts["pending"],
        "summary": actions.summary(job.action, job.values),
    }
    if getattr(request, "htmx", False):
        return render(request, "incidents/_job_progress.html", context)
    return render(request, "incidents/action_job.html", context)
