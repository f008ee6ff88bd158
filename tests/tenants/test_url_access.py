"""Every URL that takes a tenant or a consent link: strangers get 404, anonymous users sign in."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from partner_portal.consent import flow

# The kwarg names this walker knows how to fill; other apps' walkers cover theirs.
KNOWN_KWARGS = {"tenant_pk", "link_id"}


def scoped_patterns(patterns=None, namespace: str = "", converters: frozenset = frozenset()):
    """(url name, kwarg names) for every named pattern taking a tenant or link id."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        names = converters | frozenset(entry.pattern.converters)
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue
            ns = ":".join(filter(None, [namespace, entry.namespace]))
            yield from scoped_patterns(entry.url_patterns, ns, names)
        elif isinstance(entry, URLPattern) and entry.name and names & KNOWN_KWARGS:
            yield ":".join(filter(None, [namespace, entry.name])), names


PATTERNS = sorted(scoped_patterns(), key=lambda p: p[0])


def test_the_walker_finds_the_tenant_and_link_urls():
    names = {name for name, _ in PATTERNS}
    assert {
        "tenants:detail",
        "tenants:edit",
        "tenants:toggle",
        "consent:check_access",
        "consent:create",
        "consent:detail",
        "consent:revoke",
    } <= names


@pytest.fixture
def objects(tenant_a, alice):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    return {"tenant_pk": tenant_a.pk, "link_id": link.pk}


def url_for(name: str, kwargs: frozenset, objects: dict) -> str:
    unknown = kwargs - KNOWN_KWARGS
    if unknown:
        pytest.skip(f"{name} also takes {sorted(unknown)}: covered by its app's walker")
    return reverse(name, kwargs={k: objects[k] for k in kwargs})


@pytest.mark.parametrize("stranger", ["bob", "charlie"])
@pytest.mark.parametrize(("name", "kwargs"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_staff_who_may_not_see_the_tenant_get_404(client, request, objects, name, kwargs, stranger):
    url = url_for(name, kwargs, objects)
    client.force_login(request.getfixturevalue(stranger))
    # POST-only views answer GET with 405 before any lookup (it reveals nothing); a POST
    # always reaches the lookup and must be a 404, not a 403.
    assert client.get(url).status_code in (404, 405)
    assert client.post(url).status_code == 404


@pytest.mark.parametrize(("name", "kwargs"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_anonymous_users_are_sent_to_sign_in(client, objects, name, kwargs):
    url = url_for(name, kwargs, objects)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize(("name", "kwargs"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_the_owner_can_reach_it(client, alice, objects, name, kwargs):
    url = url_for(name, kwargs, objects)
    client.force_login(alice)
    get, post = client.get(url).status_code, client.post(url).status_code
    assert get in (200, 405) and post in (200, 302, 405)
    assert 404 not in (get, post)
