"""Recording audit events: one function, called by the workflows (never by signals)."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings

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
    """The address a request came from: the one function the audit log, the sign-in lockout
    (AXES_CLIENT_IP_CALLABLE) and rate limits use (L2).

    Behind PROXY_COUNT trusted reverse proxies, each appends the address it received the
    request from to X-Forwarded-For, so the client is PROXY_COUNT entries from the right;
    anything further left was written by the client and is ignored. With fewer entries than
    proxies (a misconfiguration, or a request that bypassed the proxy) or an unparsable
    entry, the peer address is all we know.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.PROXY_COUNT
    if count <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote
