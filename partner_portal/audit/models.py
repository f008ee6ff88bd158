from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which tenant, consent link or incident, and when.

    `actor` is empty for the customer's administrator and for background tasks.
    `data` holds details; never a secret or a token.
    """

    action = models.CharField(max_length=64, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    target = models.CharField(max_length=200, blank=True, help_text="e.g. consentlink:12")
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.target}"

    @property
    def sentence(self) -> str:
        """The event in words for the activity log: "Alice pressed Sync now."."""
        who = _name(self.actor) if self.actor_id else ""
        data = self.data if isinstance(self.data, dict) else {}
        words = SENTENCES.get(self.action)
        if words is None:
            return f"{who or 'The portal'}: {self.action}"
        if callable(words):
            return words(who or "Someone", data)
        return str(words).format(who=who or "Someone")


def _name(user: object) -> str:
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or str(user)


def _outcome(data: dict) -> str:
    return str(data.get("outcome") or "").replace("_", " ")


def _access_checked(who: str, data: dict) -> str:
    if data.get("outcome") == "consented":
        return "Microsoft confirmed the portal's access."
    return f"The access check found a problem: {_outcome(data) or 'unknown'}."


def _link_completed(who: str, data: dict) -> str:
    if data.get("outcome") == "granted" and not data.get("reason"):
        return "The customer's administrator gave consent."
    return f"A consent came back but was not accepted ({_outcome(data) or 'error'})."


# Event code -> words; "{who}" is the staff member who did it.
SENTENCES = {
    "tenant.created": "{who} added the customer.",
    "tenant.changed": "{who} changed the customer's details.",
    "tenant.enabled": "{who} enabled the customer.",
    "tenant.disabled": "{who} disabled the customer: it is not synced.",
    "tenant.access_check_requested": "{who} pressed Check access.",
    "tenant.access_checked": _access_checked,
    "consent.link_created": "{who} created a consent link.",
    "consent.link_revoked": "{who} revoked a consent link.",
    "consent.link_opened": "The customer opened a consent link.",
    "consent.link_declined": lambda who, data: (
        f"The customer did not consent ({_outcome(data) or 'declined'})."
    ),
    "consent.link_completed": _link_completed,
    "consent.callback_rejected": lambda who, data: (
        f"An answer from Microsoft was refused ({str(data.get('reason') or 'invalid')})."
    ),
    "incidents.sync_requested": lambda who, data: (
        f"{who} pressed {'Full re-sync' if data.get('full') else 'Sync now'}."
    ),
}
