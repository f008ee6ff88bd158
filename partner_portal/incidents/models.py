from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, models
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Left, Upper
from django.utils.functional import cached_property

from partner_portal.microsoft import clouds, vocabulary
from partner_portal.microsoft.vocabulary import Kind
from partner_portal.tenants.models import Tenant


def id_hash(microsoft_id: str) -> str:
    """The key of an ID with no documented length: SHA-256 of the whole ID, in hex."""
    return hashlib.sha256(microsoft_id.encode("utf-8", "surrogatepass")).hexdigest()


class Severity(models.TextChoices):
    """The severities the portal knows, highest first: `vocabulary`'s canonical spellings
    (what the sync stores) and its labels. The field keeps an unknown value as received."""

    HIGH = "High", vocabulary.label(Kind.SEVERITY, "High")
    MEDIUM = "Medium", vocabulary.label(Kind.SEVERITY, "Medium")
    LOW = "Low", vocabulary.label(Kind.SEVERITY, "Low")
    INFORMATIONAL = "Informational", vocabulary.label(Kind.SEVERITY, "Informational")
    UNSPECIFIED = "UnSpecified", vocabulary.label(Kind.SEVERITY, "UnSpecified")

    @property
    def rank(self) -> int:
        """4 for High … 0 for UnSpecified, for sorting."""
        return vocabulary.severity_rank(self.value)

    @classmethod
    def rank_of(cls, raw: str) -> int:
        """The rank of a severity as received, in any spelling; 0 when unknown."""
        return vocabulary.severity_rank(raw)


class Status(models.TextChoices):
    """The incident statuses the portal knows (as `Severity`)."""

    ACTIVE = "Active", vocabulary.label(Kind.STATUS, "Active")
    IN_PROGRESS = "InProgress", vocabulary.label(Kind.STATUS, "InProgress")
    AWAITING_ACTION = "AwaitingAction", vocabulary.label(Kind.STATUS, "AwaitingAction")
    RESOLVED = "Resolved", vocabulary.label(Kind.STATUS, "Resolved")
    REDIRECTED = "Redirected", vocabulary.label(Kind.STATUS, "Redirected")


# Characters of the assignee in incident_assignee_prefix (see `assignee_is`).
ASSIGNEE_INDEXED = 200


def assignee_is(value: str) -> Q:
    """Incidents assigned to `value`, in any case: on PostgreSQL the index of the assignees'
    first characters finds the candidates, the whole value decides."""
    whole = Q(assigned_to__iexact=value)
    if connection.vendor != "postgresql":
        return whole
    # The index's expression written out: as ORM expressions (Upper(Left(…))) it cost ~1 M
    # instructions a list page to compile, a fifth of the "Assigned to me" count.
    prefix = RawSQL(_ASSIGNEE_PREFIX_SQL, [value], output_field=models.BooleanField())  # noqa: S611 (a constant; the value is a parameter)
    return Q(prefix) & whole


_ASSIGNEE_PREFIX_SQL = (
    f'UPPER(LEFT("incidents_incident"."assigned_to", {ASSIGNEE_INDEXED}))'
    f" = UPPER(LEFT(%s, {ASSIGNEE_INDEXED}))"
)


class Incident(models.Model):
    """A Microsoft 365 Defender incident of one tenant, as last synced.

    Enum-like fields hold `vocabulary`'s canonical spelling of a known value, or the value as
    received; `raw` is the JSON as received (the original spellings), except that NULs and
    lone surrogates are replaced by U+FFFD everywhere (`text_repaired` says so). Microsoft
    documents no length for any text field, so none is cut. Its words for the dashboard's
    search are in `IncidentSearch`.
    """

    # Not indexed alone: the unique (tenant, microsoft_id) index serves its lookups.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="incidents", db_index=False
    )
    microsoft_id = models.BigIntegerField("incident ID")
    name = models.TextField()
    severity = models.TextField(blank=True)
    severity_rank = models.PositiveSmallIntegerField(
        default=0, help_text="0 unspecified or unknown … 4 high, for sorting."
    )
    status = models.TextField(blank=True)
    classification = models.TextField(blank=True)
    determination = models.TextField(blank=True)
    assigned_to = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    comments = models.JSONField(default=list, blank=True)
    redirect_incident_id = models.BigIntegerField(null=True, blank=True)
    created_time = models.DateTimeField()
    last_update_time = models.DateTimeField()
    portal_url = models.TextField(blank=True)
    alert_count = models.PositiveIntegerField(default=0)
    raw = models.JSONField(default=dict)
    text_repaired = models.BooleanField(
        default=False, help_text="NULs or lone surrogates received were replaced by U+FFFD."
    )
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
            # The "Needs attention" view's count on every list page (open, High, unassigned):
            # read from the index alone, where incident_tenant_sev left a row read per match
            # to check its assignee (~6 ms at 1M incidents for 50 tenants; 1.5 ms from this).
            models.Index(
                fields=["tenant", "severity", "status"],
                condition=Q(assigned_to=""),
                name="incident_unassigned_sev",
            ),
            # The "Assigned to me" view's count on every list page (assignee_is), which
            # would otherwise read every row when few are assigned to the viewer. A prefix:
            # a btree row holds at most 2,704 bytes, and a longer assignee (hostile, no
            # address is that long) would have kept its incident out of the database.
            models.Index(
                Upper(Left("assigned_to", ASSIGNEE_INDEXED)), name="incident_assignee_prefix"
            ),
        ]
        # Given to groups in the admin: read-only staff lack it and see no action controls.
        permissions = [("act_on_incident", "May update incidents in Microsoft")]

    def __str__(self) -> str:
        return f"{self.microsoft_id}: {self.name}"

    @cached_property
    def merged_into(self) -> Incident | None:
        """The incident Microsoft merged this one into, if it is synced: the same tenant's
        (an incident ID is unique only within a tenant)."""
        if self.redirect_incident_id is None:
            return None
        return Incident.objects.filter(
            tenant_id=self.tenant_id, microsoft_id=self.redirect_incident_id
        ).first()

    @property
    def portal_link(self) -> str:
        """The Defender link, only when it goes to the tenant's cloud's portal over https:
        a synced value must not become a link to anywhere else (or a javascript: URL)."""
        cloud = clouds.CLOUDS.get(self.tenant.cloud)
        if cloud is None or not isinstance(self.portal_url, str):
            return ""
        try:
            parts = urlsplit(self.portal_url)
            host = parts.hostname
        except ValueError:
            return ""
        if parts.scheme != "https" or host != urlsplit(cloud.portal_base_url).hostname:
            return ""
        return self.portal_url


class IncidentSearch(models.Model):
    """An incident's words for the dashboard's search (`store.search_text`: its name, alert
    titles, device and user names, lower-cased), in a table of their own.

    Their trigram indexes (migrations 0003, 0011, 0014, 0018) hold ~180 entries an incident.
    On the incident's row, every change at Microsoft (a status, an assignee: a new row
    version, indexes and all) wrote all of them again although the words had not changed:
    two thirds of the sync's write-ahead log. Here a row is written only when its words
    change (store._store_search).
    """

    incident = models.OneToOneField(
        Incident, on_delete=models.CASCADE, primary_key=True, related_name="search"
    )
    # The incident's tenant, for the per-tenant index (0011); no constraint of its own: the
    # incident's is enough, and the row goes with its incident.
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    text = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.incident_id}: {self.text[:80]}"


class IncidentCount(models.Model):
    """How many of a tenant's incidents have this severity and status, kept exact in the
    transaction of every change (incidents/counters.py), so that the summary reads at most
    one row per tenant, severity and status instead of counting incidents."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="incident_counts")
    # As stored on the incidents: a value Microsoft adds later has its own row.
    severity = models.TextField(blank=True)
    status = models.TextField(blank=True)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "severity", "status"], name="incidentcount_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.severity} {self.status}: {self.n}"


class IncidentDayCount(models.Model):
    """How many of a tenant's incidents were created on this UTC day with this severity,
    kept exact like `IncidentCount`: the summary's chart of incidents created per day."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="incident_day_counts")
    day = models.DateField()
    severity = models.TextField(blank=True)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "day", "severity"], name="incidentdaycount_unique"
            ),
        ]
        # Everyone's chart: the month's rows of every tenant, read from the index alone.
        indexes = [
            models.Index(fields=["day", "severity"], include=["n"], name="incidentdaycount_day")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day} {self.severity}: {self.n}"


class Alert(models.Model):
    """One alert of an incident. A sync replaces all alerts of an incident together."""

    # Not indexed alone: the unique (incident, microsoft_id_hash) index serves its lookups.
    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="alerts", db_index=False
    )
    # Whole, however long: unique by its hash (an index on the text itself has a size limit).
    microsoft_id = models.TextField("alert ID")
    microsoft_id_hash = models.CharField(max_length=64, editable=False, default="")
    title = models.TextField(blank=True)
    description = models.TextField(blank=True)
    severity = models.TextField(blank=True)
    category = models.TextField(blank=True)
    status = models.TextField(blank=True)
    detection_source = models.TextField(blank=True)
    service_source = models.TextField(blank=True)
    mitre_techniques = models.JSONField(default=list, blank=True)
    first_activity = models.DateTimeField(null=True, blank=True)
    last_activity = models.DateTimeField(null=True, blank=True)
    devices = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    raw = models.JSONField(default=dict)
    # A digest of the columns above as the sync last wrote them ("" when written otherwise):
    # an unchanged alert is recognised without reading or rewriting it (store._store_alerts).
    content_hash = models.CharField(
        max_length=32, editable=False, default="", db_default="", blank=True
    )

    class Meta:
        ordering = ["first_activity", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "microsoft_id_hash"], name="alert_unique_per_incident"
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.microsoft_id

    def save(self, *args, **kwargs) -> None:
        self.microsoft_id_hash = id_hash(self.microsoft_id)
        # Written otherwise than by the sync (the admin): the next sync rewrites it.
        self.content_hash = ""
        super().save(*args, **kwargs)


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
    # A reconciliation pass: a full listing that repairs what the watermark missed.
    reconcile = models.BooleanField(default=False)
    missing_repaired = models.PositiveIntegerField(default=0)
    stale_repaired = models.PositiveIntegerField(default=0)
    pages = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    throttled_waits = models.PositiveIntegerField(default=0)
    problems = models.PositiveIntegerField(
        default=0, help_text="Items that could not be parsed or stored (see sync problems)."
    )
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


class SyncProblem(models.Model):
    """An incident the sync received but could not parse or store: nothing is lost without a
    trace. One row per tenant and incident (or per raw item, when it has no readable ID);
    later runs fetch that one incident again and delete the row once it stores.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sync_problems")
    # The ID as Microsoft sent it ("" when there was none); a number when retryable.
    microsoft_id = models.TextField("incident ID", blank=True)
    # What identifies the problem: the ID's hash, or the raw text's when there is no ID.
    key = models.CharField(max_length=64, editable=False)
    error = models.TextField()
    raw_text = models.TextField(help_text="The item as received, as ASCII-escaped JSON.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_seen", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="syncproblem_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant}: incident {self.microsoft_id or '(no ID)'}"

    @property
    def retryable_id(self) -> int | None:
        """The incident ID to fetch again, when it is one Microsoft can be asked for."""
        text = self.microsoft_id.strip()
        # ASCII digits only: str.isdigit() is also true for "²", which int() refuses.
        return int(text) if text.isascii() and text.isdigit() and int(text) < 2**63 else None


class ChangeKind(models.TextChoices):
    NEW = "new", "New incident"
    SEVERITY_RAISED = "severity_raised", "Severity raised"
    STATUS_CHANGED = "status_changed", "Status changed"
    REASSIGNED = "reassigned", "Reassigned"
    REOPENED = "reopened", "Reopened"


class IncidentChange(models.Model):
    """The alerting outbox: "incident X changed to version V", written by the sync in the
    same transaction as the change itself (see incidents/outbox.py), so a change is never
    lost and never recorded twice (one row per incident and version).

    `before`/`after` hold the values the message needs (name, severity, status, assignee,
    tags) as they were, so that a late delivery tells about this version, not a newer one.
    `imported` marks changes of a tenant's first sync: its history, never sent one by one.
    `dispatched_at` is set once the alert dispatcher has turned the row into deliveries.
    """

    Kind = ChangeKind

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # No index of its own: change_once_per_version's (incident, version) serves lookups by
    # incident, and the sync writes a change for every incident it changes.
    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="changes", db_index=False
    )
    version = models.DateTimeField(help_text="The incident's lastUpdateTime.")
    kinds = models.JSONField(default=list)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict)
    imported = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "version"], name="change_once_per_version")
        ]
        indexes = [
            models.Index(
                fields=["id"], condition=Q(dispatched_at=None), name="change_undispatched"
            ),
            models.Index(fields=["created_at"], name="change_created"),
        ]

    def __str__(self) -> str:
        return f"{self.incident_id} @ {self.version:%Y-%m-%d %H:%M:%S}: {', '.join(self.kinds)}"


class SavedView(models.Model):
    """A named incident list of one staff member: the list's query string (filters and sort).

    The query is the whole view, so a view is shared by sharing its list URL. At most one
    view per user is the default, opened when the list is visited without a query.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="savedview_unique_name"),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default=True), name="savedview_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Preference(models.Model):
    """One staff member's display preferences. The time zone starts as the browser's."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'UTC'}"


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
