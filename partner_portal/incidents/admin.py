from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from partner_portal.incidents import counters
from partner_portal.incidents.models import Alert, Incident, IncidentChange, SyncProblem, SyncRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Synced data belongs to Microsoft: the admin shows it, the sync writes it."""

    # Microsoft's portal links are https; also what Django 6 will assume.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


ALERT_FIELDS = ("microsoft_id", "title", "severity", "status", "category", "service_source")


class AlertInline(admin.TabularInline):
    model = Alert
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ALERT_FIELDS
    readonly_fields = ALERT_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = [
        "microsoft_id",
        "name",
        "tenant",
        "severity",
        "status",
        "alert_count",
        "last_update_time",
    ]
    list_filter = ["severity", "status", "classification", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=microsoft_id", "search__text"]
    date_hierarchy = "last_update_time"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow
    inlines = [AlertInline]

    # Deleting keeps the summary's maintained counts exact (incidents/counters.py).
    def delete_model(self, request: HttpRequest, obj: Incident) -> None:
        counters.delete_incidents(Incident.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        counters.delete_incidents(queryset)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "tenant",
        "started_at",
        "outcome",
        "full",
        "pages",
        "api_calls",
        "created_count",
        "updated_count",
        "throttled_waits",
        "problems",
        "error_class",
    ]
    list_filter = ["outcome", "full", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__display_name", "error_message", "task_id"]
    date_hierarchy = "started_at"


@admin.register(SyncProblem)
class SyncProblemAdmin(ReadOnlyAdmin):
    """Incidents received but not stored. The sync retries and clears them; deleting one only
    hides it until Microsoft sends that incident again."""

    list_display = ["tenant", "microsoft_id", "error", "count", "first_seen", "last_seen"]
    list_filter = ["tenant"]
    list_select_related = ["tenant"]
    search_fields = ["=microsoft_id", "tenant__display_name", "error"]
    date_hierarchy = "last_seen"


@admin.register(IncidentChange)
class IncidentChangeAdmin(ReadOnlyAdmin):
    list_display = ["incident", "version", "kinds", "imported", "created_at", "dispatched_at"]
    list_filter = ["imported"]
    list_select_related = ["incident"]
    raw_id_fields = ["incident", "tenant"]
