"""Recording audit events: one function, called by the workflows (never by signals)."""

from __future__ import annotations

from typing import Any

from partner_portal.audit.models import AuditEvent


def record(
    action: str,
    *,
    actor: Any = None,
    tenant: Any = None,
    target: str = "",
    ip_address: str | None = None,
    **data: Any,
) -> AuditEvent:
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        tenant=tenant,
        target=target,
        ip_address=ip_address,
        data=data,
    )


def client_ip(request: Any) -> str | None:
    """The address a request came from, for the audit log."""
    return request.META.get("REMOTE_ADDR") or None
