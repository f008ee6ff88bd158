from __future__ import annotations

from django.conf import settings
from django.db import models


class EntraIdentity(models.Model):
    """Links a portal user to a user object of the MSP's Entra tenant.

    Matched by the ID token's `oid` (immutable, unique in the tenant), never by e-mail or
    user name, which Entra lets an administrator change or reuse.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entra_identity"
    )
    tenant_id = models.UUIDField("Entra tenant ID")
    object_id = models.UUIDField("Entra object ID (oid)")
    username = models.CharField(
        "Entra user name", max_length=150, blank=True, help_text="preferred_username, as last seen."
    )
    roles = models.JSONField(default=list, blank=True, help_text="App roles at the last sign-in.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Entra identity"
        verbose_name_plural = "Entra identities"
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "object_id"], name="entra_identity_oid")
        ]

    def __str__(self) -> str:
        return self.username or str(self.object_id)
