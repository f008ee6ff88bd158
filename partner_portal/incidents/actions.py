"""Working incidents: assign, set status, classify, comment and tag, written back to
Microsoft through the tenant's client. Plain functions, called by the action views (one
incident) and the bulk-action task (many).

One action on one incident:
1. refuse at once when updates are off or the tenant's token lacks the ReadWrite permission;
2. re-read the incident from Microsoft; when its lastUpdateTime is not what the user loaded,
   store the fresh copy and return a *conflict* listing what changed (the user confirms, or
   a bulk item stays unwritten) instead of overwriting someone's change;
3. PATCH, then store Microsoft's answer laid over the fresh copy (the answer may leave out
   fields: those keep the values just read), never what we sent;
4. record an audit event (who, tenant, incident, before → after, outcome, Microsoft's error).

Every call waits its turn in the tenant's call budget, leaving `ACTIONS_BUDGET_RESERVE`
calls of each period to the sync. A `Transient` error (429, 5xx, timeout) propagates: the
caller queues the action (a view) or retries with a countdown (the task), never sleeps.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from partner_portal.audit import events
from partner_portal.audit.models import AuditEvent
from partner_portal.incidents.models import (
    ActionOutcome,
    Incident,
    IncidentActionItem,
    IncidentActionJob,
    Status,
)
from partner_portal.incidents.store import store_page
from partner_portal.microsoft import errors
from partner_portal.microsoft.client import required_roles
from partner_portal.microsoft.defender import IncidentData, parse_incident
from partner_portal.microsoft.vocabulary import Kind, is_valid_pair, label, normalise

logger = logging.getLogger(__name__)

PERMISSION = "incidents.act_on_incident"
ACTIONS = {
    "assign": "Assign",
    "unassign": "Unassign",
    "status": "Set status",
    "classify": "Classify",
    "comment": "Comment",
    "tags": "Tags",
}
# The statuses a person may set (Microsoft sets Redirected itself when it merges).
SETTABLE_STATUSES = (Status.ACTIVE, Status.IN_PROGRESS, Status.RESOLVED)
MAX_COMMENT = 4000
MAX_TAG = 100
# Fields shown when an incident changed meanwhile, and kept in the audit's before → after.
WATCHED = {
    "status": "Status",
    "assigned_to": "Assigned to",
    "classification": "Classification",
    "determination": "Determination",
    "tags": "Tags",
}
QUEUED = "queued"
# Reads of one action: a merge followed, or a write answered 404, reads again (a chain of
# merges is short; this bounds a loop on a broken answer).
MAX_READS = 4


class InvalidAction(ValueError):
    """The form asked for something Microsoft would refuse (a bad value or pair)."""


@dataclass
class Result:
    """What happened, for the page: `outcome` is an ActionOutcome value or "queued"."""

    outcome: str
    message: str
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (field, was, now)
    # The incident Microsoft merged the one asked for into, when the action went there.
    merged_into: Incident | None = None


def updates_blocked_reason(tenant: Any) -> str:
    """Why this tenant's incidents cannot be updated from the portal, "" when they can."""
    if not settings.MICROSOFT_INCIDENT_UPDATES:
        return (
            "Updating incidents is turned off for this portal (MICROSOFT_INCIDENT_UPDATES). "
            "Ask an administrator to turn it on and add "
            f"{' or '.join(required_roles(tenant.source, updates=True))} to the app."
        )
    return tenant.write_access_missing


def clean_values(action: str, data: Any) -> dict[str, Any]:
    """The form's values for `action`, checked as Microsoft would check them."""
    if action not in ACTIONS:
        raise InvalidAction("Unknown action.")
    if action == "assign":
        who = _text(data.get("assigned_to"))
        if not who or len(who) > 255:
            raise InvalidAction("Give the address of the person to assign (up to 255 characters).")
        return {"assigned_to": who}
    if action == "status":
        status = normalise(Kind.STATUS, _text(data.get("status")))
        if status not in SETTABLE_STATUSES:
            raise InvalidAction("Choose Active, In progress or Resolved.")
        return {"status": status}
    if action == "classify":
        # One select of valid pairs, "TruePositive:Malware"; or the two fields apart.
        pair = _text(data.get("pair"))
        classification, _, determination = pair.partition(":")
        classification = classification or _text(data.get("classification"))
        determination = determination or _text(data.get("determination"))
        classification = normalise(Kind.CLASSIFICATION, classification)
        determination = normalise(Kind.DETERMINATION, determination)
        if not is_valid_pair(classification, determination):
            raise InvalidAction("Choose a classification with one of its determinations.")
        return {"classification": classification, "determination": determination}
    if action == "comment":
        comment = _text(data.get("comment"))
        if not comment or len(comment) > MAX_COMMENT:
            raise InvalidAction(f"Write a comment (up to {MAX_COMMENT} characters).")
        return {"comment": comment}
    if action == "tags":
        add, remove = _tags(data.get("add")), _tags(data.get("remove"))
        if not add and not remove:
            raise InvalidAction("Give a tag to add or remove.")
        return {"add": add, "remove": remove}
    return {}  # unassign


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if not isinstance(value, str):
        return ""
    # NULs and lone surrogates can neither be stored nor sent as JSON.
    value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value.strip()


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    tags: list[str] = []
    for item in items:
        for tag in _text(item).split(","):
            tag = tag.strip()[:MAX_TAG]
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def patch_body(action: str, values: dict[str, Any], current: IncidentData) -> dict[str, Any]:
    """The PATCH body, from the values and the incident as Microsoft just answered it."""
    if action == "assign":
        return {"assignedTo": values["assigned_to"]}
    if action == "unassign":
        return {"assignedTo": ""}
    if action == "status":
        return {"status": values["status"]}
    if action == "classify":
        return {
            "classification": values["classification"],
            "determination": values["determination"],
        }
    if action == "comment":
        return {"comment": values["comment"]}
    # Tags: the PATCH replaces the list, so build it from what Microsoft holds now.
    tags = [t for t in current.tags if t not in values["remove"]]
    tags += [t for t in values["add"] if t not in tags]
    return {"tags": tags}


def summary(action: str, values: dict[str, Any]) -> str:
    """The action in words, for the history and the job page."""
    if action == "assign":
        return f"Assign to {values.get('assigned_to')}"
    if action == "status":
        return f"Set status to {label(Kind.STATUS, values.get('status', ''))}"
    if action == "classify":
        return (
            f"Classify as {label(Kind.CLASSIFICATION, values.get('classification', ''))}, "
            f"{label(Kind.DETERMINATION, values.get('determination', ''))}"
        )
    if action == "tags":
        parts = [f"+{t}" for t in values.get("add", [])]
        parts += [f"-{t}" for t in values.get("remove", [])]
        return "Tags " + " ".join(parts)
    return ACTIONS.get(action, action)


def _watched(incident: Incident | IncidentData) -> dict[str, Any]:
    return {
        "status": incident.status,
        "assigned_to": incident.assigned_to,
        "classification": incident.classification,
        "determination": incident.determination,
        "tags": list(incident.tags),
    }


def _shown(name: str, value: Any) -> str:
    if name == "tags":
        return ", ".join(value) or "—"
    kind = {"status": Kind.STATUS, "classification": Kind.CLASSIFICATION}.get(name)
    if name == "determination":
        kind = Kind.DETERMINATION
    if kind is not None and value:
        return label(kind, value)
    return value or "—"


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (WATCHED[name], _shown(name, before[name]), _shown(name, after[name]))
        for name in WATCHED
        if before[name] != after[name]
    ]


def _store(tenant: Any, data: dict[str, Any]) -> Incident:
    """Store an incident as Microsoft described it (the sync's own upsert); returns its row."""
    parsed = parse_incident({k: v for k, v in data.items() if not k.startswith("@odata.")})
    store_page(tenant=tenant, incidents=[parsed], synced_at=timezone.now())
    return Incident.objects.select_related("tenant").get(
        tenant=tenant, microsoft_id=parsed.incident_id
    )


def _full(data: IncidentData) -> dict[str, Any]:
    return {**data.raw, "alerts": [a.raw for a in data.alerts]}


def act(
    *,
    incident: Incident,
    user: Any,
    action: str,
    values: dict[str, Any],
    expected: datetime | None,
    confirm: bool = False,
    ip_address: str | None = None,
    job: IncidentActionJob | None = None,
) -> Result:
    """One action on one incident (see the module docstring). Raises `errors.Transient`
    (429, 5xx, timeouts) for the caller to queue or retry.

    When Microsoft merged the incident into another (`redirectIncidentId`: on the re-read,
    or a 404 for an incident the portal knows was merged), the action goes to that one and
    `Result.merged_into` names it: the user saw the merged incident, not the target, so the
    target is not compared with `expected`. A bulk job does not act on a target that is an
    item of the same job: that item does.
    """
    tenant = incident.tenant
    subject = incident  # the incident written: the one asked for, or the one it became
    merged: list[int] = []  # the merged incidents followed, in order
    before = _watched(incident)

    def audit(result: Result, after: dict[str, Any] | None = None, error: str = "") -> Result:
        # The event belongs to the incident written (or last read), one the portal stores.
        about = subject if subject.pk else incident
        if about.pk != incident.pk:
            result.merged_into = about
        events.record(
            f"incident.{action}",
            actor=user,
            tenant=tenant,
            target=f"incident:{about.pk}",
            ip_address=ip_address,
            microsoft_id=about.microsoft_id,
            summary=summary(action, values),
            before=before,
            after=after if after is not None else before,
            outcome=result.outcome,
            message=result.message,
            error=error,
            job=job.pk if job else None,
            **({"merged_from": merged} if merged else {}),
        )
        return result

    blocked = updates_blocked_reason(tenant)
    if blocked:
        return audit(Result(ActionOutcome.REFUSED, blocked))
    try:
        client = tenant.incident_client(budget_reserve=settings.ACTIONS_BUDGET_RESERVE)
        # Read, follow a merge, compare, write; a 404 to the write (merged or deleted
        # meanwhile) reads again. Bounded: a chain of merges cannot loop forever.
        for _ in range(MAX_READS):
            fresh = client.get_incident(subject.microsoft_id)
            into = fresh.redirect_incident_id if fresh else subject.redirect_incident_id
            if into is not None and into != subject.microsoft_id:
                if fresh is not None:
                    subject = _store(tenant, _full(fresh))  # shown as merged from now on
                merged.append(subject.microsoft_id)
                if (
                    job is not None
                    and job.items.filter(
                        incident__tenant=tenant, incident__microsoft_id=into
                    ).exists()
                ):
                    return audit(Result(ActionOutcome.DONE, _merged_in_job(merged, into)))
                # The portal may not have the target yet: it is stored once read.
                subject = Incident.objects.filter(
                    tenant=tenant, microsoft_id=into
                ).first() or Incident(tenant=tenant, microsoft_id=into)
                continue
            if fresh is None:
                return audit(Result(ActionOutcome.REFUSED, _gone(subject.microsoft_id)))
            if merged:
                subject = _store(tenant, _full(fresh))
                before = _watched(fresh)
            elif expected is not None and fresh.last_update_time != expected and not confirm:
                _store(tenant, _full(fresh))
                result = _conflict(
                    before, _watched(fresh), shown=incident.last_update_time == expected
                )
                return audit(result, _watched(fresh))
            body = patch_body(action, values, fresh)
            answer = client.update_incident(subject.microsoft_id, **body)
            if answer is not None:
                break
        else:
            return audit(Result(ActionOutcome.REFUSED, _too_many_merges(incident)))
    except errors.Transient:
        raise
    except errors.MicrosoftError as exc:
        return audit(Result(_outcome_of(exc), _plain(exc, tenant)), error=exc.message)
    # Microsoft's answer over what it just told us: fields the answer leaves out keep the
    # values of the re-read, not of what we sent.
    answer_raw = {k: v for k, v in answer.raw.items() if not k.startswith("@odata.")}
    data = {**_full(fresh), **answer_raw}
    data["alerts"] = [a.raw for a in (answer.alerts or fresh.alerts)]
    with transaction.atomic():
        subject = _store(tenant, data)
    after = _watched(subject)
    done = _merged_done(merged, subject.microsoft_id) if merged else "Done."
    return audit(Result(ActionOutcome.DONE, done, _differences(before, after)), after)


def _conflict(before: dict[str, Any], now: dict[str, Any], *, shown: bool) -> Result:
    """Changed in Microsoft since the user loaded it. When the row is still the version the
    user saw (`shown`), say what changed; when a sync stored a newer one meanwhile, what they
    saw is not known here: say what it is now."""
    message = "Someone changed this incident in Microsoft since you loaded it"
    if not shown:
        now_reads = "; ".join(f"{WATCHED[name]}: {_shown(name, now[name])}" for name in WATCHED)
        return Result(ActionOutcome.CONFLICT, f"{message}. It now reads: {now_reads}.")
    changed = _differences(before, now)
    message += "." if changed else " (not in the fields shown here)."
    return Result(ActionOutcome.CONFLICT, message, changed)


def _gone(microsoft_id: int) -> str:
    return (
        f"Microsoft no longer has incident {microsoft_id} in this tenant "
        "(deleted, or past its retention): nothing was changed."
    )


def _merged_done(merged: list[int], into: int) -> str:
    return f"Microsoft merged incident {merged[0]} into incident {into}: the change was made there."


def _merged_in_job(merged: list[int], into: int) -> str:
    return (
        f"Microsoft merged incident {merged[0]} into incident {into}, which this job updates "
        "as well: nothing more to do here."
    )


def _too_many_merges(incident: Incident) -> str:
    return (
        f"Incident {incident.microsoft_id} was merged or changed again each time the portal "
        "read it: nothing was changed. Open it in Microsoft's portal."
    )


def _outcome_of(exc: errors.MicrosoftError) -> str:
    return ActionOutcome.REFUSED if exc.status in (400, 401, 403) else ActionOutcome.FAILED


def _plain(exc: errors.MicrosoftError, tenant: Any) -> str:
    """Microsoft's refusal in words staff can act on."""
    if isinstance(exc, errors.MissingPermissions | errors.Forbidden):
        role = " or ".join(required_roles(tenant.source, updates=True))
        return (
            f"Microsoft refused: the portal's app may not update incidents in this tenant "
            f"({role} is missing). Send the customer a new consent link from the "
            "tenant page, then run 'Check access'."
        )
    if exc.status == 400:
        return f"Microsoft refused the change as invalid: {exc.message}"
    return f"{exc.title}: {exc.message}. {exc.fix}"


# --- bulk actions -------------------------------------------------------------------------


def create_job(
    *,
    user: Any,
    action: str,
    values: dict[str, Any],
    incidents: list[Incident],
    loaded: Mapping[int, datetime | None] | None = None,
) -> IncidentActionJob:
    """A job with one pending item per incident. `loaded` maps an incident's pk to the
    lastUpdateTime the user saw when they chose it (the list page as loaded): a change made
    in Microsoft since then is a conflict, even when a sync stored it before the submit.
    An incident without one is compared with the row as it is now."""
    loaded = loaded or {}
    with transaction.atomic():
        job = IncidentActionJob.objects.create(created_by=user, action=action, values=values)
        IncidentActionItem.objects.bulk_create(
            IncidentActionItem(job=job, incident=i, expected=loaded.get(i.pk) or i.last_update_time)
            for i in incidents
        )
    return job


def parse_selection(values: list[str]) -> dict[int, datetime | None]:
    """The list's checkboxes, `<pk>@<lastUpdateTime as loaded>` (or a bare pk), as
    {pk: loaded time or None}; anything else is ignored."""
    selected: dict[int, datetime | None] = {}
    for value in values:
        pk, _, loaded = value.partition("@")
        if pk.isdigit() and len(pk) < 19:
            try:
                when = parse_datetime(loaded) if loaded else None
            except ValueError:
                when = None
            selected[int(pk)] = when if when is not None and when.tzinfo is not None else None
    return selected


def run_job(*, job: IncidentActionJob) -> float | None:
    """Work through a job's pending items. Returns None when every item has an outcome, else
    the seconds to wait before calling again (a tenant's budget or Microsoft asked to wait,
    or an item failed transiently and retries with backoff).

    A throttled tenant's remaining items wait; other tenants' items go on meanwhile.
    """
    waits: list[float] = []
    throttled: set[int] = set()
    pending = job.items.filter(outcome=ActionOutcome.PENDING).select_related("incident__tenant")
    for item in pending:
        tenant_pk = item.incident.tenant_id
        if tenant_pk in throttled:
            continue
        try:
            result = act(
                incident=item.incident,
                user=job.created_by,
                action=job.action,
                values=job.values,
                expected=item.expected,
                job=job,
            )
        except errors.Throttled as exc:
            throttled.add(tenant_pk)
            waits.append(float(exc.retry_after))
            continue
        except errors.Transient as exc:
            item.attempts += 1
            if item.attempts > settings.ACTIONS_MAX_RETRIES:
                result = Result(ActionOutcome.FAILED, f"{exc.title}: {exc.message}")
            else:
                IncidentActionItem.objects.filter(pk=item.pk).update(attempts=item.attempts)
                base = 2.0 ** (item.attempts - 1)
                waits.append(base + random.uniform(0, base))  # noqa: S311 (jitter)
                continue
        message = result.message
        if result.changed and result.outcome == ActionOutcome.CONFLICT:
            message += " " + "; ".join(f"{f}: {a} → {b}" for f, a, b in result.changed)
        # Conditional: a redelivered task never overwrites an outcome already recorded.
        IncidentActionItem.objects.filter(pk=item.pk, outcome=ActionOutcome.PENDING).update(
            outcome=result.outcome,
            message=message[:2000],
            attempts=item.attempts,
            finished_at=timezone.now(),
        )
    if job.items.filter(outcome=ActionOutcome.PENDING).exists():
        return min(waits) if waits else 1.0
    IncidentActionJob.objects.filter(pk=job.pk, finished_at=None).update(finished_at=timezone.now())
    return None


def history(incident: Incident) -> list[Any]:
    """The incident's audit events, newest first."""
    found = list(
        AuditEvent.objects.filter(target=f"incident:{incident.pk}")
        .select_related("actor")
        .order_by("-created_at")[:100]
    )
    for event in found:
        before, after = event.data.get("before"), event.data.get("after")
        ok = isinstance(before, dict) and isinstance(after, dict)
        event.changes = (  # type: ignore[attr-defined]
            _differences(
                {k: before.get(k, "") for k in WATCHED}, {k: after.get(k, "") for k in WATCHED}
            )
            if ok
            else []
        )
    return found
