from django.contrib import admin

from partner_portal.accounts.models import EntraIdentity


@admin.register(EntraIdentity)
class EntraIdentityAdmin(admin.ModelAdmin):
    """Read-only: Entra sign-ins create and update these; deleting one unlinks the user."""

    list_display = ["username", "user", "object_id", "roles", "last_sign_in_at"]
    search_fields = ["username", "user__username", "object_id"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "tenant_id",
        "object_id",
        "username",
        "roles",
        "created_at",
        "last_sign_in_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
