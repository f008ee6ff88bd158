"""Which rules and channels a staff user may see, built on the one access rule
(tenants/access.py). Strangers get 404, as for tenants."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from partner_portal.alerts.models import Channel, Rule, RuleScope
from partner_portal.tenants.access import sees_every_tenant, visible_tenant_pks, visible_tenants
from partner_portal.tenants.models import Tenant


def visible_rules(user: Any) -> QuerySet[Rule]:
    """A rule is visible to whoever may see every tenant it covers: its creator (for "all
    I may see"), members of its group, staff who see all its chosen tenants."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Rule.objects.none()
    if sees_every_tenant(user):
        return Rule.objects.all()
    hidden = Tenant.objects.exclude(pk__in=visible_tenant_pks(user))
    chosen = Rule.objects.filter(scope=RuleScope.TENANTS).exclude(tenants__in=hidden)
    return Rule.objects.filter(
        Q(scope=RuleScope.VISIBLE, created_by=user)
        | Q(scope=RuleScope.GROUP, group__user=user)
        | Q(pk__in=chosen.values("pk"))
    ).distinct()


def get_rule_for_user(user: Any, pk: int) -> Rule:
    return get_object_or_404(visible_rules(user), pk=pk)


def visible_channels(user: Any) -> QuerySet[Channel]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Channel.objects.none()
    if sees_every_tenant(user):
        return Channel.objects.all()
    return Channel.objects.filter(created_by=user)


def get_channel_for_user(user: Any, pk: int) -> Channel:
    return get_object_or_404(visible_channels(user), pk=pk)


def rule_tenant_pks(rule: Rule) -> set[int]:
    """The tenants a rule covers now: its scope, within what its creator may see."""
    base = visible_tenants(rule.created_by) if rule.created_by_id else Tenant.objects.all()
    if rule.scope == RuleScope.TENANTS:
        base = base.filter(pk__in=rule.tenants.values("pk"))
    elif rule.scope == RuleScope.GROUP:
        base = base.filter(groups=rule.group_id) if rule.group_id else base.none()
    return set(base.values_list("pk", flat=True))
