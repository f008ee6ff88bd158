from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from partner_portal.incidents.models import ChangeKind, Incident, IncidentChange
from partner_portal.microsoft import vocabulary
from partner_portal.tenants.models import Tenant


def _fernet() -> Fernet:
    # Webhook URLs (Slack, Teams) and signing secrets are credentials: encrypted at rest
    # with a key derived from SECRET_KEY, never shown again after they are entered.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"partner-portal alert channels"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(value: str) -> str:
    return _fernet().decrypt(value.encode()).decode() if value else ""


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (signed, Standard Webhooks)"
    TEAMS = "teams", "Microsoft Teams (Workflows webhook)"
    SLACK = "slack", "Slack (incoming webhook)"


class Channel(models.Model):
    """Where alert messages go. Staff see the channels they made (superusers all).

    `failing_since` is set when a delivery gives up and cleared by the next one that gets
    through: the dashboard banner shows channels that are failing.
    """

    Kind = ChannelKind

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind)
    recipients = models.TextField(blank=True, help_text="Email addresses, one per line.")
    url_encrypted = models.TextField(blank=True, editable=False)
    secret_encrypted = models.TextField(blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ChannelKind.values), name="channel_kind")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def url(self) -> str:
        return decrypt(self.url_encrypted)

    @url.setter
    def url(self, value: str) -> None:
        self.url_encrypted = encrypt(value)

    @property
    def secret(self) -> str:
        return decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_encrypted = encrypt(value)

    @property
    def recipient_list(self) -> list[str]:
        return [r.strip() for r in self.recipients.replace(",", "\n").splitlines() if r.strip()]

    @property
    def target(self) -> str:
        """Where it sends, without credentials: fine for pages."""
        if self.kind == ChannelKind.EMAIL:
            return ", ".join(self.recipient_list)
        from urllib.parse import urlsplit

        return urlsplit(self.url).hostname or "" if self.url_encrypted else ""


class RuleScope(models.TextChoices):
    VISIBLE = "visible", "All tenants I may see"
    TENANTS = "tenants", "Chosen tenants"
    GROUP = "group", "Tenants of a staff group"


class Rule(models.Model):
    """Which incident changes to tell whom, and how soon.

    The tenants a rule covers are always within what its creator may see (tenants/access.py),
    so a rule never tells about a tenant its creator lost access to. A rule without a
    creator (the demo's) covers every tenant.
    """

    Scope = RuleScope

    name = models.CharField(max_length=100)
    is_active = models.BooleanField("active", default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    scope = models.CharField(max_length=16, choices=RuleScope, default=RuleScope.VISIBLE)
    tenants = models.ManyToManyField(Tenant, blank=True, related_name="+")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE)
    kinds = models.JSONField("changes", default=list)
    min_severity = models.CharField(
        "minimum severity",
        max_length=32,
        blank=True,
        choices=vocabulary.choices(vocabulary.Kind.SEVERITY),
        help_text="Empty: any severity.",
    )
    text = models.CharField(
        "name or tag contains", max_length=200, blank=True, help_text="Case-insensitive."
    )
    channels = models.ManyToManyField(Channel, related_name="rules")
    digest_minutes = models.PositiveIntegerField(
        "digest every N minutes", default=0, help_text="0: send each change at once."
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=RuleScope.values), name="rule_scope"),
        ]

    def __str__(self) -> str:
        return self.name

    def kind_labels(self) -> list[str]:
        return [ChangeKind(k).label for k in self.kinds if k in ChangeKind.values]

    def matches(self, change: IncidentChange) -> bool:
        """Whether this change is one the rule asks about (its tenant is checked apart)."""
        if not set(change.kinds) & set(self.kinds):
            return False
        severity = change.after.get("severity", "")
        if self.min_severity and vocabulary.severity_rank(severity) < vocabulary.severity_rank(
            self.min_severity
        ):
            return False
        if self.text:
            needle = self.text.lower()
            haystack = [change.after.get("name", ""), *change.after.get("tags", [])]
            if not any(needle in str(h).lower() for h in haystack):
                return False
        return True


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    FOLDED = "folded", "In a digest"


class Delivery(models.Model):
    """One message to one channel: an incident version for one rule, or a digest.

    Exactly once: the database allows one delivery per (rule, channel, incident, version)
    and one digest per (channel, digest key); a worker sends only a delivery it claimed by a
    conditional UPDATE (pending → sending, with a lease). `message_id` is fixed when the row
    is made, so every retry carries the same `webhook-id` / Message-ID and a receiver that
    saw a try whose answer was lost can tell it is the same message.

    A delivery folded into a digest (a digest rule, the per-minute cap, a first sync's
    import) points at it with `digest` and is not sent by itself.
    """

    Status = DeliveryStatus

    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    version = models.DateTimeField(null=True, blank=True)
    change = models.ForeignKey(
        IncidentChange, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    digest = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="folded"
    )
    digest_key = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus)
    message_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    due_at = models.DateTimeField()
    give_up_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "channel", "incident", "version"],
                condition=Q(incident__isnull=False),
                name="delivery_once_per_version",
            ),
            models.UniqueConstraint(
                fields=["channel", "digest_key"],
                condition=~Q(digest_key=""),
                name="delivery_one_digest",
            ),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="delivery_due"),
            models.Index(fields=["rule", "-created_at"], name="delivery_rule"),
            models.Index(fields=["channel", "created_at"], name="delivery_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.channel} ({self.status})"

    @property
    def is_digest(self) -> bool:
        return bool(self.digest_key)

    @staticmethod
    def new_message_id() -> str:
        return "msg_" + secrets.token_hex(16)
