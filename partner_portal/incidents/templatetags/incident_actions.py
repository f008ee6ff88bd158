"""The incident page's action forms and history, and the list's bulk bar, as inclusion tags:
the pages include them with one line, and every view that renders them (the detail page,
the action's htmx answer) builds the same context here."""

from __future__ import annotations

import functools
from html import escape
from typing import Any

from django import template
from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe

from partner_portal.incidents import actions
from partner_portal.incidents.models import Incident
from partner_portal.microsoft.vocabulary import (
    DETERMINATIONS_BY_CLASSIFICATION,
    Kind,
    label,
)

register = template.Library()
MAX_SUGGESTIONS = 50


def classification_groups() -> list[dict[str, Any]]:
    """The valid (classification, determination) pairs, grouped, with friendly labels."""
    return [
        {
            "label": label(Kind.CLASSIFICATION, classification),
            "pairs": [
                (f"{classification}:{d}", label(Kind.DETERMINATION, d)) for d in determinations
            ],
        }
        for classification, determinations in DETERMINATIONS_BY_CLASSIFICATION.items()
    ]


def status_choices() -> list[tuple[str, str]]:
    return [(s, label(Kind.STATUS, s)) for s in actions.SETTABLE_STATUSES]


def actions_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    user = request.user
    can_act = user.has_perm(actions.PERMISSION)
    suggestions: list[str] = []
    if can_act:
        # The addresses already seen in this tenant, plus the user's own.
        suggestions = list(
            Incident.objects.filter(tenant_id=incident.tenant_id)
            .exclude(assigned_to="")
            .order_by()
            .values_list("assigned_to", flat=True)
            .distinct()[:MAX_SUGGESTIONS]
        )
    return {
        "incident": incident,
        "can_act": can_act,
        "blocked": actions.updates_blocked_reason(incident.tenant) if can_act else "",
        "me": getattr(user, "email", "") or user.get_username(),
        "suggestions": sorted(suggestions),
        "statuses": status_choices(),
        "classification_groups": classification_groups(),
        "status_label": label(Kind.STATUS, incident.status) if incident.status else "—",
        "classification_label": label(Kind.CLASSIFICATION, incident.classification)
        if incident.classification
        else "—",
        "determination_label": label(Kind.DETERMINATION, incident.determination)
        if incident.determination
        else "—",
        "history": actions.history(incident),
        "request": request,
    }


@register.inclusion_tag("incidents/_actions.html", takes_context=True)
def incident_actions(context: template.Context, incident: Incident) -> dict[str, Any]:
    ctx = actions_context(context["request"], incident)
    ctx["csrf_token"] = context.get("csrf_token")
    return ctx


@functools.cache
def bulk_options() -> tuple[SafeString, SafeString]:
    """The bulk bar's status and classification options: the same on every list page, so
    written once per process instead of by a template loop on every page."""
    statuses = "".join(f'<option value="{v}">{escape(t)}</option>' for v, t in status_choices())
    pairs = "".join(
        f'<optgroup label="{escape(group["label"])}">'
        + "".join(
            f'<option value="{escape(value)}">{escape(group["label"])}: {escape(text)}</option>'
            for value, text in group["pairs"]
        )
        + "</optgroup>"
        for group in classification_groups()
    )
    return mark_safe(statuses), mark_safe(pairs)  # noqa: S308 (every value is escaped)


@register.inclusion_tag("incidents/_bulk_bar.html", takes_context=True)
def bulk_bar(context: template.Context) -> dict[str, Any]:
    request = context["request"]
    status_options, pair_options = bulk_options()
    return {
        "can_act": request.user.has_perm(actions.PERMISSION),
        "status_options": status_options,
        "pair_options": pair_options,
        "csrf_token": context.get("csrf_token"),
        "me": getattr(request.user, "email", "") or request.user.get_username(),
    }


@register.simple_tag(takes_context=True)
def can_act(context: template.Context) -> bool:
    return bool(context["request"].user.has_perm(actions.PERMISSION))
