"""The one access rule: which tenants a staff user may see.

Every tenant-scoped query starts here. Strangers get 404, never 403, so that a URL does
not confirm that a tenant or incident exists.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from partner_portal.tenants.models import Tenant


def sees_every_tenant(user: Any) -> bool:
    """An active superuser sees every tenant, without a filter."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser)


def visible_tenants(user: Any) -> QuerySet[Tenant]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Tenant.objects.none()
    if sees_every_tenant(user):
        return Tenant.objects.all()
    return Tenant.objects.filter(groups__user=user).distinct()


def visible_tenant_pks(user: Any) -> QuerySet[Tenant, Any]:
    """The visible tenants' primary keys, as a subquery for filtering other tables."""
    return visible_tenants(user).values("pk")


def get_tenant_for_user(user: Any, pk: int) -> Tenant:
    return get_object_or_404(visible_tenants(user), pk=pk)
