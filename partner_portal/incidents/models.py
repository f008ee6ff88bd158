from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from partner_portal.tenants.models import Tenant


class Severity(models.TextChoices):
    """Microsoft's raw spellings (microsoft-protocols.md §6.4), highest first. The field
    keeps whatever Microsoft sends; these are the values the portal knows and ranks."""

    HIGH = "High", "High"
    MEDIUM = "Medium", "Medium"
    LOW = "Low", "Low"
    INFORMATIONAL = "Informational", "Informational"
    UNSPECIFIED = "UnSpecified", "Unspecified"

    @property
    def rank(self) -> int:
        """4 for High … 0 for UnSpecified, for sorting."""
        members = list(Severity)
        return len(members) - 1 - members.index(self)

    @classmethod
    def rank_of(cls, raw: str) -> int:
        """The rank of a severity as received, in any case; 0 when unknown."""
        wanted = raw.strip().lower()
        return next((s.rank for s in cls if s.value.lower() == wanted), 0)


class Status(models.TextChoices):
    """Microsoft's incident statuses (raw spellings, as `Severity`)."""

    ACTIVE = "Active", "Active"
    IN_PROGRESS = "InProgress", "In progress"
    RESOLVED = "Resolved", "Resolved"
    REDIRECTED = "Redirected", "Redirected"


class Incident(models.Model):
    """A Microsoft 365 Defender incident of one tenant, as last synced.

    Enum-like fields keep Microsoft's raw strings (spellings vary across API versions);
    `raw` is the JSON exactly as received. `search_text` is derived at sync time from the
    incident name, alert titles, device names and user names, for the dashboard's search.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="incidents")
    microsoft_id = models.BigIntegerField("incident ID")
    name = models.TextField()
    severity = models.CharField(max_length=32, blank=True)
    severity_rank = models.PositiveSmallIntegerField(
        default=0, help_text="0 unknown … 4 high, for sorting."
    )
    status = models.CharField(max_length=32, blank=True)
    classification = models.CharField(max_length=64, blank=True)
    determination = models.CharField(max_length=64, blank=True)
    assigned_to = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=list, blank=True)
    comments = models.JSONField(default=list, blank=True)
    redirect_incident_id = models.BigIntegerField(null=True, blank=True)
    created_time = models.DateTimeField()
    last_update_time = models.DateTimeField()
    portal_url = models.URLField(max_length=500, blank=True)
    alert_count = models.PositiveIntegerField(default=0)
    search_text = models.TextField(blank=True)
    raw = models.JSONField(default=dict)
    synced_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_update_time", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "microsoft_id"], name="incident_unique_per_tenant"
            ),
        ]
        indexes = [
            models.Index(fields=["-last_update_time", "-id"], name="incident_updated"),
            models.Index(fields=["-created_time", "-id"], name="incident_created"),
            models.Index(
                fields=["-severity_rank", "-last_update_time", "-id"],
                name="incident_severity",
            ),
            models.Index(fields=["tenant", "-last_update_time", "-id"], name="incident_tenant"),
            models.Index(
                fields=["status", "severity", "-last_update_time"],
                name="incident_status_sev",
            ),
            # The dashboard's capped counts for staff who see some tenants, filtered by
            # severity/status: an index-only scan per tenant instead of a table scan.
            models.Index(fields=["tenant", "severity", "status"], name="incident_tenant_sev"),
            # The summary page. Open incidents per tenant and severity: an index-only scan
            # of the open rows alone (most incidents are resolved).
            models.Index(
                fields=["tenant", "severity"],
                condition=~Q(status="Resolved"),
                name="incident_open_tenant_sev",
            ),
            # Its 30-day chart: an index-only range scan of the month's rows, for everyone's
            # tenants or a few (the tenant is read from the index too).
            models.Index(
                fields=["created_time", "severity", "tenant"], name="incident_created_sev"
            ),
        ]
        # Given to groups in the admin: read-only staff lack it and see no action controls.
        permissions = [("act_on_incident", "May update incidents in Microsoft")]

    def __str__(self) -> str:
        return f"{self.microsoft_id}: {self.name}"


class Alert(models.Model):
    """One alert of an incident. A sync replaces all alerts of an incident together."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="alerts")
    microsoft_id = models.CharField("alert ID", max_length=200)
    title = models.TextField(blank=True)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=32, blank=True)
    category = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, blank=True)
    detection_source = models.CharField(max_length=64, blank=True)
    service_source = models.CharField(max_length=64, blank=True)
    mitre_techniques = models.JSONField(default=list, blank=True)
    first_activity = models.DateTimeField(null=True, blank=True)
    last_activity = models.DateTimeField(null=True, blank=True)
    devices = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    raw = models.JSONField(default=dict)

    class Meta:
        ordering = ["first_activity", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "microsoft_id"], name="alert_unique_per_incident"
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.microsoft_id


class SyncOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    SKIPPED = "skipped", "Skipped (another sync holds the tenant)"
    THROTTLED = "throttled", "Throttled (will resume)"
    RETRYING = "retrying", "Transient error (will retry)"
    FAILED = "failed", "Failed"


class SyncRun(models.Model):
    """One run of the incident sync for one tenant: what it did and how it ended."""

    Outcome = SyncOutcome

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sync_runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=SyncOutcome, default=SyncOutcome.RUNNING)
    full = models.BooleanField(default=False)
    pages = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    throttled_waits = models.PositiveIntegerField(default=0)
    watermark_before = models.DateTimeField(null=True, blank=True)
    watermark_after = models.DateTimeField(null=True, blank=True)
    error_class = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["tenant", "-started_at"], name="syncrun_tenant")]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=SyncOutcome.values),
                name="syncrun_outcome_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant} sync {self.started_at:%Y-%m-%d %H:%M} {self.outcome}"

    @property
    def duration(self):
        return self.finished_at - self.started_at if self.finished_at else None


class ActionOutcome(models.TextChoices):
    PENDING = "pending", "Waiting"
    DONE = "done", "Done"
    REFUSED = "refused", "Refused"
    CONFLICT = "conflict", "Changed meanwhile"
    FAILED = "failed", "Failed"


class IncidentActionJob(models.Model):
    """One bulk action (assign, set status, classify, tag…) on incidents of any tenants,
    run by a task; its items say what happened to each incident."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    action = models.CharField(max_length=32)
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} on {self.items.count()} incidents"

    def counts(self) -> dict[str, int]:
        found = dict(self.items.values_list("outcome").annotate(n=models.Count("id")).order_by())
        return {outcome: found.get(outcome, 0) for outcome in ActionOutcome.values}

    @property
    def is_running(self) -> bool:
        return self.finished_at is None


class IncidentActionItem(models.Model):
    """One incident of a bulk action and its outcome. `expected` is the incident's
    lastUpdateTime when the user chose it: a later change in Microsoft is a conflict."""

    job = models.ForeignKey(IncidentActionJob, on_delete=models.CASCADE, related_name="items")
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    expected = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=ActionOutcome, default=ActionOutcome.PENDING)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "incident"], name="action_item_unique"),
            models.CheckConstraint(
                condition=Q(outcome__in=ActionOutcome.values), name="action_item_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.incident_id}: {self.outcome}"
