"""SIGN_IN_MODE: in `entra` mode local passwords work only for the break-glass superusers,
on the portal's login page and the admin's alike; the login page says what applies."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import UserFactory

PASSWORD = "correct horse battery"  # tests/factories.UserFactory's


@pytest.fixture
def entra_mode(settings):
    settings.SIGN_IN_MODE = "entra"
    settings.ENTRA_TENANT_ID = "11111111-2222-3333-4444-555555555555"
    settings.SIGN_IN_BREAK_GLASS_USERS = ["breakglass"]


@pytest.fixture
def breakglass(db):
    return UserFactory(username="breakglass", is_superuser=True, is_staff=True)


@pytest.fixture
def root(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


def password_sign_in(client, username: str, url: str = "login"):
    return client.post(reverse(url), {"username": username, "password": PASSWORD})


@pytest.mark.django_db
def test_entra_mode_refuses_local_passwords_of_staff(client, entra_mode, alice):
    response = password_sign_in(client, "alice")
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_entra_mode_refuses_superusers_not_named_break_glass(client, entra_mode, root):
    password_sign_in(client, "root")
    assert "_auth_user_id" not in client.session
    password_sign_in(client, "root", url="admin:login")
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_entra_mode_lets_the_break_glass_superuser_in(client, entra_mode, breakglass):
    response = password_sign_in(client, "breakglass")
    assert response.status_code == 302
    assert client.get(reverse("incidents:list")).status_code == 200


@pytest.mark.django_db
def test_a_break_glass_name_is_not_enough_without_superuser(client, entra_mode):
    UserFactory(username="breakglass")
    password_sign_in(client, "breakglass")
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_password_sessions_end_when_the_mode_becomes_entra(client, settings, alice):
    password_sign_in(client, "alice")
    assert client.get(reverse("incidents:list")).status_code == 200
    settings.SIGN_IN_MODE = "entra"
    assert client.get(reverse("incidents:list")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "microsoft", "password_form", "break_glass_note"),
    [("password", False, True, False), ("both", True, True, False), ("entra", True, True, True)],
)
def test_the_login_page_shows_what_applies(
    client, settings, mode, microsoft, password_form, break_glass_note
):
    settings.SIGN_IN_MODE = mode
    html = client.get(reverse("login") + "?next=/tenants/").content.decode()
    assert ("Sign in with Microsoft" in html) is microsoft
    assert ('name="password"' in html) is password_form
    assert ("break-glass administrators only" in html) is break_glass_note
    if microsoft:
        assert f'href="{reverse("entra_login")}?next=/tenants/"' in html
