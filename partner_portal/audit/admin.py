from django.contrib import admin

from partner_portal.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: an audit log that can be edited proves nothing."""

    list_display = ["created_at", "action", "actor", "tenant", "target", "ip_address"]
    list_filter = ["action"]
    search_fields = ["action", "target", "tenant__display_name", "actor__username"]
    list_select_related = ["actor", "tenant"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
