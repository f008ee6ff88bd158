"""Formatting filters for the incident pages."""

from __future__ import annotations

from django import template

from partner_portal.incidents.models import Severity
from partner_portal.microsoft import vocabulary

register = template.Library()

SEVERITY_CLASSES: dict[str, str] = {
    Severity.HIGH: "sev-high",
    Severity.MEDIUM: "sev-medium",
    Severity.LOW: "sev-low",
}


@register.filter
def severity_class(severity: str) -> str:
    """The badge class of a severity (Informational/UnSpecified use the neutral badge)."""
    return SEVERITY_CLASSES.get(severity, "")


@register.filter
def https_only(url: str) -> str:
    """Only https links leave the portal: a synced value must not become a javascript: link."""
    return url if isinstance(url, str) and url.lower().startswith("https://") else ""


@register.filter
def label(value: str, kind: str) -> str:
    """Words for a severity/status/classification/determination/alert_status value; an
    unknown one is shown as Microsoft sent it."""
    return vocabulary.label(vocabulary.Kind(kind), value or "")
