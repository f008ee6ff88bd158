from __future__ import annotations

from django.contrib import admin

from partner_portal.alerts.models import Channel, Delivery, Rule


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "scope", "min_severity", "digest_minutes", "created_by"]
    list_filter = ["is_active", "scope", "min_severity"]
    filter_horizontal = ["tenants", "channels"]
    search_fields = ["name"]


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    # The URL and the signing secret are encrypted and never shown (not even here).
    list_display = ["name", "kind", "target", "failing_since", "created_by"]
    list_filter = ["kind"]
    fields = ["name", "kind", "recipients", "created_by", "failing_since", "last_error"]
    readonly_fields = ["failing_since", "last_error"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "rule", "channel", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["rule", "channel"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
