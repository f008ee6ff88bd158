"""Formatting filters for the incident pages (and the tenant pages' times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

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
    return vocabulary.label(Kind(kind), value) if value else ""


@register.filter
def https_only(url: str) -> str:
    """Only https links leave the portal: a synced value must not become a javascript: link."""
    return url if isinstance(url, str) and url.lower().startswith("https://") else ""


def _utc_title(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


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


def _ago(value: datetime) -> str:
    # The largest unit only ("1 day ago", not "1 day, 2 hours ago"): it fits a table cell.
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value, depth=1)} ago"


@register.filter
def age(value: datetime | None) -> str:
    """`<time>` saying how long ago ("5 minutes ago"), local time and UTC on hover."""
    if not isinstance(value, datetime):
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{} {} · {}">{}</time>',
        value.isoformat(),
        f"{local:%Y-%m-%d %H:%M}",
        local.tzname() or "",
        _utc_title(value),
        _ago(value),
    )
