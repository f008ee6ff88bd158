"""A staff user's permissions: their own and their groups' (accounts/backends.py reads both
in one query)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

ACT = "incidents.act_on_incident"


def fresh(user):
    """The user as the next request loads it (permissions are cached per instance)."""
    return type(user).objects.get(pk=user.pk)


def test_permissions_come_from_the_user_and_from_each_of_their_groups():
    act = Permission.objects.get(codename="act_on_incident")
    view = Permission.objects.get(codename="view_tenant")
    user = UserFactory(groups=[GroupFactory(), GroupFactory()])
    assert not fresh(user).has_perm(ACT)
    assert fresh(user).get_all_permissions() == set()

    user.user_permissions.add(act)
    assert fresh(user).get_all_permissions() == {ACT}

    user.user_permissions.clear()
    user.groups.last().permissions.add(act, view)
    assert fresh(user).get_all_permissions() == {ACT, "tenants.view_tenant"}

    # The same permission twice (own and a group's) is one permission.
    user.user_permissions.add(act)
    user.groups.first().permissions.add(act)
    assert fresh(user).get_all_permissions() == {ACT, "tenants.view_tenant"}
    assert fresh(user).has_perm(ACT)


def test_another_users_or_groups_permissions_do_not_count():
    act = Permission.objects.get(codename="act_on_incident")
    group = GroupFactory()
    group.permissions.add(act)
    other = UserFactory(groups=[group])
    other.user_permissions.add(Permission.objects.get(codename="view_tenant"))
    user = UserFactory(groups=[GroupFactory()])
    assert fresh(other).has_perm(ACT)
    assert not fresh(user).has_perm(ACT)
    assert fresh(user).get_all_permissions() == set()


def test_an_inactive_user_has_no_permissions_and_a_superuser_has_all():
    act = Permission.objects.get(codename="act_on_incident")
    user = UserFactory()
    user.user_permissions.add(act)
    user.is_active = False
    user.save()
    assert not fresh(user).has_perm(ACT)
    root = UserFactory(is_superuser=True)
    assert fresh(root).has_perm(ACT)
    assert ACT in fresh(root).get_all_permissions()
