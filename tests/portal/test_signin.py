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


PROXY = "10.0.0.2"


def _via_proxy(client, client_address: str, username: str, password: str, forged: str = ""):
    forwarded = f"{forged}, {client_address}" if forged else client_address
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded,
    )


@pytest.mark.django_db
def test_behind_the_proxy_a_lockout_is_per_username_and_client_not_the_proxy(
    client, alice, settings
):
    # L2: behind the documented reverse proxy every client had the proxy's address, so 5
    # anonymous tries locked alice out for everyone.
    settings.PROXY_COUNT = 1
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _via_proxy(client, "203.0.113.66", "alice", "wrong", forged="198.51.100.1")
    assert _via_proxy(client, "203.0.113.66", "alice", PASSWORD).status_code == 429
    # The attacker's forged X-Forwarded-For entry is not what got locked…
    from axes.models import AccessAttempt

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.66"}
    # …and alice, from her own address behind the same proxy, signs in.
    assert _via_proxy(client, "203.0.113.7", "alice", PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("count", "remote", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # no proxy: the header is ignored
        (1, "10.0.0.2", "203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.2", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # forged left part ignored
        (2, "10.0.0.3", "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "10.0.0.3", "203.0.113.9", "10.0.0.3"),  # fewer hops than proxies: the peer
        (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
        (1, "10.0.0.2", "", "10.0.0.2"),
        (1, "10.0.0.2", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_one_function_says_the_client_address(rf, settings, count, remote, forwarded, expected):
    from partner_portal.audit.events import client_ip

    settings.PROXY_COUNT = count
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_axes_uses_the_same_client_address_function(settings):
    assert settings.AXES_CLIENT_IP_CALLABLE == "partner_portal.audit.events.client_ip"
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


@pytest.mark.django_db
def test_the_audit_log_records_the_client_behind_the_proxy(client, settings):
    from partner_portal.audit.models import AuditEvent
    from tests.factories import ConsentLinkFactory

    settings.PROXY_COUNT = 1
    link = ConsentLinkFactory()
    client.get(f"/consent/{link.token}/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert AuditEvent.objects.get(action="consent.link_opened").ip_address == "203.0.113.5"


@pytest.mark.django_db
def test_the_locked_out_page_says_for_how_long_and_links_back(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    page = response.content.decode()
    assert response.status_code == 429
    assert f"{settings.LOGIN_COOLOFF_MINUTES} minutes" in page
    assert f'href="{reverse("login")}"' in page
