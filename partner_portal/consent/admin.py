from django.contrib import admin

from partner_portal.consent.models import ConsentLink


@admin.register(ConsentLink)
class ConsentLinkAdmin(admin.ModelAdmin):
    """Links without their public token: it is a bearer secret for the customer's admin."""

    list_display = [
        "pk",
        "tenant",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "opened_count",
        "completed_at",
        "outcome",
        "error_code",
    ]
    list_filter = ["outcome"]
    search_fields = ["tenant__display_name", "returned_tenant_id", "error_code"]
    list_select_related = ["tenant", "created_by"]
    exclude = ["token_hash", "state_nonce"]
    readonly_fields = [
        "tenant",
        "created_by",
        "created_at",
        "opened_count",
        "first_opened_at",
        "last_opened_at",
        "completed_at",
        "outcome",
        "error_code",
        "error_description",
        "returned_tenant_id",
    ]

    def has_add_permission(self, request):
        # Links are created from the tenant page, where the flow records who and when.
        return False
