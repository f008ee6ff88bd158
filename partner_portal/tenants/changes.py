"""Staff changes to tenants, each recorded in the audit log."""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction

from partner_portal.audit.events import record
from partner_portal.tenants.forms import TenantForm
from partner_portal.tenants.models import Tenant

AUDITED_FIELDS = ("display_name", "primary_domain", "entra_tenant_id", "cloud", "sync_enabled")
# Sent by name: tenants never imports consent (imports flow consent → tenants).
VERIFY_TASK = "partner_portal.consent.tasks.verify_tenant_access"


@transaction.atomic
def create_tenant(*, form: TenantForm, actor: Any, ip_address: str | None = None) -> Tenant:
    tenant = form.save()
    record(
        "tenant.created",
        actor=actor,
        tenant=tenant,
        target=f"tenant:{tenant.pk}",
        ip_address=ip_address,
        display_name=tenant.display_name,
        groups=sorted(g.name for g in tenant.groups.all()),
    )
    return tenant


@transaction.atomic
def update_tenant(*, form: TenantForm, actor: Any, ip_address: str | None = None) -> Tenant:
    before = Tenant.objects.get(pk=form.instance.pk)
    groups_before = sorted(g.name for g in before.groups.all())
    tenant = form.save()
    changes: dict[str, Any] = {
        name: [str(getattr(before, name)), str(getattr(tenant, name))]
        for name in AUDITED_FIELDS
        if getattr(before, name) != getattr(tenant, name)
    }
    if before.entra_tenant_id != tenant.entra_tenant_id:
        changes["incidents_deleted"] = _forget_binding(tenant=tenant)
    groups_after = sorted(g.name for g in tenant.groups.all())
    if groups_after != groups_before:
        changes["groups"] = [groups_before, groups_after]
    if form.has_changed():
        record(
            "tenant.changed",
            actor=actor,
            tenant=tenant,
            target=f"tenant:{tenant.pk}",
            ip_address=ip_address,
            changes=changes,
            notes_changed="notes" in form.changed_data,
        )
    return tenant


def _forget_binding(*, tenant: Tenant) -> int:
    """A new Entra tenant ID: nothing learnt about the old tenant may stay. Consent state,
    granted roles, the watermark and the old tenant's incidents go (M2); sync runs stay as
    history. Returns how many incidents were deleted."""
    tenant.forget_consent()
    # Links still waiting for a confirmation were answered by some tenant for the old record.
    tenant.consent_links.filter(awaiting_confirmation=True).update(awaiting_confirmation=False)
    deleted = tenant.incidents.count()
    tenant.incidents.all().delete()
    # The summary's maintained counts of those incidents (incidents/counters.py) go too,
    # after the incidents: a writer that stored one meanwhile has committed its counts.
    tenant.incident_counts.all().delete()
    tenant.incident_day_counts.all().delete()
    return deleted


def set_enabled(
    *, tenant: Tenant, enabled: bool, actor: Any, ip_address: str | None = None
) -> bool:
    """Enable or disable a tenant; False when it already was."""
    changed = tenant.set_active(enabled)
    if changed:
        record(
            "tenant.enabled" if enabled else "tenant.disabled",
            actor=actor,
            tenant=tenant,
            target=f"tenant:{tenant.pk}",
            ip_address=ip_address,
        )
    return changed


@transaction.atomic
def switch_source(
    *, tenant: Tenant, source: str, actor: Any, ip_address: str | None = None
) -> bool:
    """Read the tenant's incidents from another API; False when it already did.

    Then an access check for the new API's permission, which queues the full re-sync (the
    watermark is cleared) once it passes. Same incident and alert IDs: same rows.
    """
    before = tenant.source
    if not tenant.switch_source(source):
        return False
    record(
        "tenant.changed",
        actor=actor,
        tenant=tenant,
        target=f"tenant:{tenant.pk}",
        ip_address=ip_address,
        changes={"source": [before, source]},
        notes_changed=False,
    )
    if tenant.entra_tenant_id is not None:
        transaction.on_commit(
            lambda: current_app.send_task(VERIFY_TASK, kwargs={"tenant_pk": tenant.pk}),
            robust=True,
        )
    return True
