"""The demo's rule out of the box: High and above, all tenants → the console (email)."""

from __future__ import annotations

from typing import Any

from partner_portal.alerts.models import Channel, ChannelKind, Rule
from partner_portal.incidents.models import ChangeKind

DEMO_RULE = "High and above, all tenants"


def ensure_demo_rule(*, user: Any) -> Rule:
    """Idempotent: the demo calls it at every start. With the demo's EMAIL_URL (the console)
    the worker prints each message."""
    channel, _ = Channel.objects.get_or_create(
        name="Console email",
        defaults={
            "kind": ChannelKind.EMAIL,
            "recipients": user.email or "demo@example.com",
            "created_by": user,
        },
    )
    rule, created = Rule.objects.get_or_create(
        name=DEMO_RULE,
        defaults={
            "kinds": list(ChangeKind.values),
            "min_severity": "High",
            "created_by": user,
        },
    )
    if created:
        rule.channels.add(channel)
    return rule
