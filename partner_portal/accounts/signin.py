"""Sign-in with Microsoft, the portal's side: settings → Microsoft's flow → a portal user.

1. `sign_in_config()` reads the settings once (the only place that does for `microsoft.signin`).
2. `user_for_identity()` turns a validated `Identity` into a portal user:
   a. map its app roles (`roles`) and group object IDs (`groups`) to portal groups;
   b. refuse when the token's groups did not fit (overage) and group mappings exist: the
      portal cannot know which groups the user is in, so it does not guess;
   c. find the user by (tenant, oid), or create one (unusable password: Microsoft only);
   d. set name and e-mail from the token, and the user's groups to exactly the mapped ones,
      at every sign-in: removing someone from the Entra group removes their access at the
      next sign-in. With no mapped role at all the sign-in is refused, and a known user
      loses the groups they had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from partner_portal.accounts.models import EntraIdentity
from partner_portal.microsoft.clouds import get_cloud
from partner_portal.microsoft.signin import Identity, SignInConfig, SignInRefused


def sign_in_config() -> SignInConfig:
    if settings.MICROSOFT_CERTIFICATE_PATH and settings.MICROSOFT_PRIVATE_KEY_PATH:
        credential: str | dict[str, str] = {
            "private_key": Path(settings.MICROSOFT_PRIVATE_KEY_PATH).read_text(),
            "public_certificate": Path(settings.MICROSOFT_CERTIFICATE_PATH).read_text(),
        }
    else:
        credential = settings.MICROSOFT_CLIENT_SECRET
    cloud = get_cloud(settings.ENTRA_CLOUD, login_base_url=settings.MICROSOFT_LOGIN_BASE_URL)
    return SignInConfig(
        client_id=settings.MICROSOFT_CLIENT_ID,
        credential=credential,
        tenant_id=settings.ENTRA_TENANT_ID,
        login_base_url=cloud.login_base_url,
        # The demo sends browsers to devcloud's plain-HTTP port, as for admin consent.
        browser_base_url=settings.MICROSOFT_CONSENT_BASE_URL,
        ca_bundle=settings.MICROSOFT_CA_BUNDLE,
        timeout=float(settings.MICROSOFT_HTTP_TIMEOUT),
        require_mfa=settings.ENTRA_REQUIRE_MFA,
    )


def mapped_group_names(identity: Identity) -> set[str]:
    by_role = settings.ENTRA_ROLE_GROUPS
    by_group = {k.strip().lower(): v for k, v in settings.ENTRA_GROUP_GROUPS.items()}
    names = {by_role[r] for r in identity.roles if r in by_role}
    names |= {by_group[g] for g in identity.groups if g in by_group}
    return {n.strip() for n in names if n.strip()}


def user_for_identity(identity: Identity) -> Any:
    """The portal user for this Entra identity, with its groups re-applied; or
    `SignInRefused` ("overage", "no_role", "disabled")."""
    if identity.groups_overage and settings.ENTRA_GROUP_GROUPS:
        raise SignInRefused(
            "overage",
            "Your account is in more Entra groups than fit in a sign-in token, so the portal "
            "cannot tell which of its groups you belong to.",
            username=identity.username,
        )
    names = mapped_group_names(identity)
    refusal = None
    with transaction.atomic():
        link = (
            EntraIdentity.objects.select_for_update()
            .select_related("user")
            .filter(tenant_id=identity.tenant_id, object_id=identity.object_id)
            .first()
        )
        if not names:
            # Refused, but the groups a known user had still go (committed, then raised).
            if link is not None:
                link.user.groups.clear()
                link.roles = identity.roles
                link.save(update_fields=["roles"])
            refusal = SignInRefused(
                "no_role", "Your account has no role in the portal.", username=identity.username
            )
        else:
            if link is None:
                link = EntraIdentity.objects.create(
                    user=_new_user(identity),
                    tenant_id=identity.tenant_id,
                    object_id=identity.object_id,
                )
            if link.user.is_active:
                _update_user(link, identity, names)
            else:
                refusal = SignInRefused(
                    "disabled", "Your portal account is disabled.", username=identity.username
                )
    if refusal is not None:
        raise refusal
    assert link is not None  # noqa: S101 (a sign-in without a link was refused above)
    return link.user


def _update_user(link: EntraIdentity, identity: Identity, names: set[str]) -> None:
    user = link.user
    first, _, last = identity.name.partition(" ")
    user.first_name, user.last_name = first[:150], last[:150]
    user.email = identity.email
    user.save(update_fields=["first_name", "last_name", "email"])
    user.groups.set([Group.objects.get_or_create(name=name[:150])[0] for name in sorted(names)])
    link.username = identity.username
    link.roles = identity.roles
    link.last_sign_in_at = timezone.now()
    link.save(update_fields=["username", "roles", "last_sign_in_at"])


def _new_user(identity: Identity) -> Any:
    User = get_user_model()  # noqa: N806
    # The user name is for display only (the link is the oid): the UPN when free.
    username = identity.username or f"entra-{identity.object_id}"
    if User.objects.filter(username=username).exists():
        username = f"entra-{identity.object_id}"
    user = User(username=username[:150], is_staff=False, is_superuser=False)
    user.set_unusable_password()
    user.save()
    return user
