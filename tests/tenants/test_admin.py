"""The admin's tenant and audit pages: a tenant's lease and watermark shown, the audit log
read-only."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from partner_portal.tenants.models import Tenant


def test_the_admin_shows_the_lease_and_the_watermark(admin_client, tenant_a):
    lease = timezone.now() + timedelta(minutes=3)
    Tenant.objects.filter(pk=tenant_a.pk).update(sync_lease_until=lease)
    listing = admin_client.get("/admin/tenants/tenant/").content.decode()
    assert "Sync lease until" in listing
    change = admin_client.get(f"/admin/tenants/tenant/{tenant_a.pk}/change/").content.decode()
    assert "incidents_watermark" in change and "sync_lease_until" in change


def test_the_audit_log_is_read_only_in_the_admin(admin_client, tenant_a):
    from partner_portal.audit.events import record

    event = record("tenant.changed", tenant=tenant_a)
    assert admin_client.get("/admin/audit/auditevent/").status_code == 200
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    response = admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403


def test_an_existing_tenants_entra_id_changes_on_the_tenant_page_only(admin_client, tenant_a):
    # The tenant page forgets what was learnt about the old Entra tenant; the admin can't.
    change = admin_client.get(f"/admin/tenants/tenant/{tenant_a.pk}/change/").content.decode()
    assert 'name="entra_tenant_id"' not in change
    assert str(tenant_a.entra_tenant_id) in change  # shown, read-only
    add = admin_client.get("/admin/tenants/tenant/add/").content.decode()
    assert 'name="entra_tenant_id"' in add
