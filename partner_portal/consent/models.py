from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from partner_portal.tenants.models import Tenant


def new_link_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored of a link's token. 256 random bits need no salt or slow hash: the
    point is that a database reader (a backup, the admin) cannot open the customer's link."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_hash() -> str:
    """A hash of a token nobody knows (rows made without `token=`, e.g. in the admin)."""
    return hash_token(new_link_token())


def default_expiry():
    return timezone.now() + timedelta(days=settings.CONSENT_LINK_MAX_AGE_DAYS)


class Outcome(models.TextChoices):
    GRANTED = "granted", "Granted"
    DENIED = "denied", "Denied"
    TENANT_MISMATCH = "tenant_mismatch", "Tenant mismatch"
    EXPIRED = "expired", "Expired"
    ERROR = "error", "Error"


class LinkStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    USED = "used", "Used"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class ConsentLink(models.Model):
    """An admin-consent link sent to a customer's Global Administrator.

    The public URL carries a token of which only `token_hash` is stored; the `state` sent
    to Microsoft is signed separately and bound to this link and `state_nonce`. A link
    completes once: completion is a conditional UPDATE on `completed_at IS NULL`.
    """

    Outcome = Outcome
    Status = LinkStatus

    # Only the hash of the public token is stored; the full link is shown once, at creation.
    token_hash = models.CharField(
        max_length=64, unique=True, default=new_token_hash, editable=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="consent_links")
    # Entra tenant IDs (GUIDs), as everywhere: the one the customer must consent with (a
    # domain staff typed is resolved to it) and the one Microsoft's callback returned.
    expected_tenant_id = models.CharField(
        max_length=253,
        blank=True,
        help_text="Tenant ID the customer must consent with (a domain is resolved to it).",
    )
    # The domain staff typed, for display; `expected_tenant_id` holds the ID it resolved to.
    expected_domain = models.CharField(max_length=253, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=default_expiry)
    revoked_at = models.DateTimeField(null=True, blank=True)

    opened_count = models.PositiveIntegerField(default=0)
    first_opened_at = models.DateTimeField(null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    state_nonce = models.CharField(max_length=64, blank=True, editable=False)

    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, blank=True)
    error_code = models.CharField(max_length=128, blank=True)
    error_description = models.TextField(blank=True)
    returned_tenant_id = models.CharField(max_length=64, blank=True)
    # A link without an expected tenant binds nothing by itself: the tenant Microsoft
    # returned waits here until a staff member confirms it on the tenant page.
    awaiting_confirmation = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome="") | Q(outcome__in=Outcome.values),
                name="consentlink_outcome_valid",
            )
        ]

    def __str__(self) -> str:
        return f"Consent link for {self.tenant} ({self.created_at:%Y-%m-%d})"

    @property
    def token(self) -> str:
        """The public token: known only on the instance that was created with it ('' else)."""
        return getattr(self, "_token", "")

    @token.setter
    def token(self, raw: str) -> None:
        self._token = raw
        self.token_hash = hash_token(raw)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return self.completed_at is None and self.revoked_at is None and not self.is_expired

    @property
    def status(self) -> str:
        if self.completed_at is not None:
            return LinkStatus.USED
        if self.revoked_at is not None:
            return LinkStatus.REVOKED
        if self.is_expired:
            return LinkStatus.EXPIRED
        return LinkStatus.ACTIVE

    def get_status_display(self) -> str:
        return LinkStatus(self.status).label

    @classmethod
    def status_condition(cls, status: str) -> Q:
        """The filter for one `LinkStatus` value (the same rules as `status`)."""
        now = timezone.now()
        if status == LinkStatus.USED:
            return Q(completed_at__isnull=False)
        if status == LinkStatus.REVOKED:
            return Q(completed_at__isnull=True, revoked_at__isnull=False)
        if status == LinkStatus.EXPIRED:
            return Q(completed_at__isnull=True, revoked_at__isnull=True, expires_at__lte=now)
        return Q(completed_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
