"""Which sign-ins the sign-in mode allows, enforced where every password check goes through
(the portal's login page and the admin's alike), and again on every request of a session."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db import connection


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
            names: Iterable[tuple[str, str]]
            if user_obj.is_superuser:
                fields = ("content_type__app_label", "codename")
                names = Permission.objects.values_list(*fields).order_by()
            else:
                names = _permission_names(user_obj.pk)
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in names}
        return user_obj._perm_cache


# A user's own permissions and their groups', as (app label, codename), from the tables of
# django.contrib.auth's models. SQL rather than the ORM's UNION of two querysets: building
# that took ~0.9 ms, eight times the query's own cost, on every list request.
PERMISSIONS_SQL = """
    SELECT django_content_type.app_label, auth_permission.codename
    FROM auth_permission
    JOIN django_content_type ON django_content_type.id = auth_permission.content_type_id
    WHERE auth_permission.id IN (
        SELECT permission_id FROM auth_user_user_permissions WHERE user_id = %s
        UNION
        SELECT auth_group_permissions.permission_id FROM auth_group_permissions
        JOIN auth_user_groups ON auth_user_groups.group_id = auth_group_permissions.group_id
        WHERE auth_user_groups.user_id = %s
    )
"""


def _permission_names(user_pk: Any) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(PERMISSIONS_SQL, [user_pk, user_pk])
        return cursor.fetchall()


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
