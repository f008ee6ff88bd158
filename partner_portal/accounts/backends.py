"""Which sign-ins the sign-in mode allows, enforced where every password check goes through
(the portal's login page and the admin's alike), and again on every request of a session."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission


def password_allowed(user: Any) -> bool:
    """Local passwords: always in `password`/`both` mode; in `entra` mode only for the
    break-glass superusers named in SIGN_IN_BREAK_GLASS_USERS."""
    if settings.SIGN_IN_MODE != "entra":
        return True
    return user.is_superuser and user.get_username() in settings.SIGN_IN_BREAK_GLASS_USERS


class PortalModelBackend(ModelBackend):
    """Django's permissions, the user's own and their groups' read in one query instead of
    two: the incident list asks on every request whether its reader may act."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):  # the cache ModelBackend keeps per request
            fields = ("content_type__app_label", "codename")
            if user_obj.is_superuser:
                names = Permission.objects.values_list(*fields).order_by()
            else:
                mine = Permission.objects.filter(user=user_obj).values_list(*fields).order_by()
                groups = Permission.objects.filter(group__user=user_obj).values_list(*fields)
                names = mine.union(groups.order_by())
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in names}
        return user_obj._perm_cache


class PasswordBackend(PortalModelBackend):
    """Django's username + password check, as the sign-in mode allows."""

    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and password_allowed(user)

    def get_user(self, user_id: Any) -> Any:
        # A password session started before the mode became `entra` ends at its next request.
        user = super().get_user(user_id)
        return user if user is not None and password_allowed(user) else None


class EntraBackend(PortalModelBackend):
    """Sessions of Microsoft sign-ins (accounts.views.entra_callback logs users in with it).
    It never checks a password."""

    def authenticate(
        self,
        request: Any,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        return None

    def get_user(self, user_id: Any) -> Any:
        if settings.SIGN_IN_MODE == "password":
            return None
        return super().get_user(user_id)
