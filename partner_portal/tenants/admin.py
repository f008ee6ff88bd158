from django.contrib import admin

from partner_portal.tenants.models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "primary_domain",
        "entra_tenant_id",
        "cloud",
        "source",
        "consent_state",
        "is_active",
        "sync_enabled",
        "last_sync_at",
        "last_sync_outcome",
        "sync_lease_until",
    ]
    list_filter = [
        "consent_state",
        "cloud",
        "source",
        "is_active",
        "sync_enabled",
        "last_sync_outcome",
    ]
    search_fields = ["display_name", "primary_domain", "entra_tenant_id"]
    filter_horizontal = ["groups"]
    # The source changes on the tenant page only (Tenant.switch_source: a full re-sync).
    readonly_fields = ["created_at", "updated_at", "consent_checked_at", "last_sync_at", "source"]
    fieldsets = [
        (
            None,
            {"fields": ["display_name", "primary_domain", "entra_tenant_id", "cloud", "source"]},
        ),
        ("Access", {"fields": ["groups", "is_active", "notes"]}),
        (
            "Consent",
            {
                "fields": [
                    "consent_state",
                    "granted_roles",
                    "consent_error_class",
                    "consent_error_message",
                    "consent_checked_at",
                ]
            },
        ),
        (
            "Sync",
            {
                # Said whether or not a lease is held now: the field shows whether it is.
                "description": (
                    "A running sync holds the tenant until “Sync lease until”; empty or past "
                    "means no sync holds it. Clear it only if no sync is running."
                ),
                "fields": [
                    "sync_enabled",
                    "incidents_watermark",
                    "sync_lease_until",
                    "last_sync_at",
                    "last_sync_outcome",
                    "last_sync_error_class",
                    "last_sync_error_message",
                ],
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        # An existing tenant's Entra tenant ID changes on the tenant page only: there the
        # old tenant's consent, watermark, incidents and counts go with it
        # (tenants/changes.py); saved here, they would stay beside the new tenant's.
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "entra_tenant_id"]
