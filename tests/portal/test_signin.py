"""Staff sign-in: every page but the public ones asks for it, the login page signs in and out,
and repeated failures lock the username out (django-axes)."""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.conf import settings
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, resolve, reverse

PASSWORD = "correct horse battery"  # tests/factories.UserFactory's
# Sample values tried for URL parameters until the URL reverses and resolves back.
SAMPLES = ["1", str(uuid.UUID(int=1)), "auth", "x"]


def named_urls(
    patterns: list | None = None, namespace: str = "", params: frozenset = frozenset()
) -> list[tuple[str, frozenset, object]]:
    """(namespaced name, parameter names, view) of every named URL, admin's included."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        here = params | frozenset(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += named_urls(entry.url_patterns, inner, here)
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((namespace + entry.name, here, entry.callback))
    return found


def sample_url(name: str, params: frozenset) -> str:
    keys = sorted(params)
    for values in itertools.product(SAMPLES, repeat=len(keys)):
        try:
            url = reverse(name, kwargs=dict(zip(keys, values, strict=True)))
        except NoReverseMatch:
            continue
        if resolve(url).view_name == name:
            return url
    raise AssertionError(f"no sample URL for {name}: add a value to SAMPLES")


def is_public(name: str) -> bool:
    # Only sign-in itself and the consent pages customers open may be public (they are
    # marked @login_not_required); admin views are checked by the admin's own redirect.
    return name in {"login", "admin:login", "entra_login", "entra_callback"} or name.startswith(
        "consent:"
    )


URLS = named_urls()
PUBLIC_VIEWS = {name for name, _, view in URLS if getattr(view, "login_required", True) is False}


@pytest.mark.parametrize(("name", "params"), [(n, p) for n, p, _ in URLS], ids=lambda v: str(v))
@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_sign_in(client, name, params):
    if name in PUBLIC_VIEWS and not name.startswith("admin:"):
        assert is_public(name), f"{name} is @login_not_required but not meant to be public"
        return
    if name == "admin:login":
        return
    url = sample_url(name, params)
    response = client.get(url)
    # The admin's own pages send to the admin's sign-in, the rest to the portal's.
    logins = {reverse(settings.LOGIN_URL)}
    if name.startswith("admin:"):
        logins.add(reverse("admin:login"))
    assert response.status_code == 302, f"{url} answered {response.status_code}"
    assert response["Location"].split("?next=")[0] in logins, response["Location"]
    assert "?next=" in response["Location"]


def test_the_url_walk_sees_the_portal_pages_and_the_admin():
    names = {name for name, _, _ in URLS}
    assert {"incidents:list", "tenants:list", "consent:links", "logout"} <= names
    assert "admin:auth_user_change" in names


@pytest.mark.django_db
def test_the_login_page_is_the_portals_own(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html and 'autocomplete="current-password"' in html
    assert "css/portal.css" in html
    assert "Sign out" not in html


@pytest.mark.django_db
def test_staff_sign_in_and_out(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("incidents:list")
    page = client.get(reverse("incidents:list"))
    assert page.status_code == 200
    assert "alice" in page.content.decode()

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("incidents:list")).status_code == 302


@pytest.mark.django_db
def test_sign_in_returns_to_the_page_asked_for(client, alice):
    target = reverse("tenants:list")
    response = client.post(
        f"{reverse('login')}?next={target}",
        {"username": "alice", "password": PASSWORD, "next": target},
    )
    assert response["Location"] == target


@pytest.mark.django_db
def test_a_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_out_even_with_the_right_password(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()

    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_lockout_is_per_username_and_address(client, alice, bob):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    response = client.post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
