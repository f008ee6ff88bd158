"""Every URL that takes a tenant, consent link or incident ID: a signed-in stranger gets 404
(never 403: a URL must not confirm that the object exists) and an anonymous visitor is sent
to sign in.

The cases come from the project's URL resolver, so a URL added by anyone is checked without
editing this file; a URL with an argument this file doesn't know fails until it gets a case
in OBJECTS (or, if public by design, an entry in PUBLIC).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.shortcuts import resolve_url
from django.urls import URLResolver, get_resolver, include, path, reverse
from django.utils import timezone

from partner_portal.incidents.models import (
    IncidentActionItem,
    IncidentActionJob,
    SavedView,
    SyncRun,
)
from tests.factories import ConsentLinkFactory, IncidentFactory, UserFactory

# Public by design: the customer's administrator has no portal account.
PUBLIC = {
    "consent:landing",
    "consent:callback",
    "consent:start",
    "consent:retry",
    "consent:not_found",
}
# The admin isn't tenant-scoped: it is for superusers only (test_the_admin_is_for_superusers_only).
SKIPPED_NAMESPACES = {"admin"}
# URL argument → how to make an object of alice's tenant (tenant_a) that it points at
# (ConsentLink pk for link_id, SyncRun pk for run_id, SavedView pk for view_id).
OBJECTS = {
    "tenant_pk": lambda tenant: tenant.pk,
    "link_id": lambda tenant: ConsentLinkFactory(tenant=tenant).pk,
    "incident_id": lambda tenant: IncidentFactory(tenant=tenant).pk,
    "run_id": lambda tenant: SyncRun.objects.create(tenant=tenant, started_at=timezone.now()).pk,
    "rule_id": lambda tenant: _rule_of(tenant).pk,
    "channel_id": lambda tenant: _channel_of_alice().pk,
    # A saved view belongs to a user, not a tenant: alice's.
    "view_id": lambda tenant: (
        SavedView.objects.get_or_create(user=_alice(), name="Alice's view", query="severity=High")[
            0
        ].pk
    ),
    "job_id": lambda tenant: _action_job(tenant).pk,
}


def _action_job(tenant):
    job = IncidentActionJob.objects.create(action="status", values={"status": "Resolved"})
    IncidentActionItem.objects.create(job=job, incident=IncidentFactory(tenant=tenant))
    return job


def _alice():
    # The cast's alice when a test has her; UserFactory would reset her password (and with it
    # her signed-in session).
    return get_user_model().objects.filter(username="alice").first() or UserFactory(
        username="alice"
    )


def _channel_of_alice():
    from partner_portal.alerts.models import Channel

    return Channel.objects.create(
        name="mail", kind="email", recipients="a@x.example", created_by=_alice()
    )


def _rule_of(tenant):
    """A rule covering tenant_a alone: alice (who sees it) may see the rule, strangers not."""
    from partner_portal.alerts.models import Rule

    rule = Rule.objects.create(name="A only", scope="tenants", kinds=["new"])
    rule.tenants.set([tenant])
    rule.channels.set([_channel_of_alice()])
    return rule


def _walk(patterns, namespace: str = "", arguments: frozenset[str] = frozenset()):
    for entry in patterns:
        names = arguments | frozenset(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES:
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, inner, names)
        else:
            yield (f"{namespace}{entry.name}" if entry.name else None), names, str(entry.pattern)


def _patterns() -> list[tuple[str | None, frozenset[str], str]]:
    return [
        (name, arguments, route)
        for name, arguments, route in _walk(get_resolver().url_patterns)
        if name not in PUBLIC
    ]


def _object_patterns() -> list[tuple[str, frozenset[str]]]:
    return [(name, arguments) for name, arguments, _ in _patterns() if arguments]


def _unknown_arguments() -> dict[str, list[str]]:
    return {
        name or route: sorted(arguments - OBJECTS.keys())
        for name, arguments, route in _patterns()
        if arguments - OBJECTS.keys()
    }


def test_every_url_argument_has_an_access_case():
    unknown = _unknown_arguments()
    assert unknown == {}, (
        "These URLs take arguments that tests/test_url_access.py can't fill: add a case to "
        "OBJECTS (or the name to PUBLIC if the page is public by design)."
    )
    unnamed = [route for name, arguments, route in _patterns() if arguments and not name]
    assert unnamed == [], "Name these URL patterns so that the access test can reverse them."


# A stand-in URLconf for the test below.
urlpatterns = [
    path("runs/<int:run_number>/", lambda request, run_number: None, name="run"),
    path("t/<int:tenant_pk>/", lambda request, tenant_pk: None, name="tenant"),
    path(
        "consent/",
        include(([path("<str:token>/", lambda r, token: None, name="landing")], "consent")),
    ),
]


@pytest.mark.urls(__name__)
def test_a_url_with_an_unknown_argument_fails_the_check():
    assert _unknown_arguments() == {"run": ["run_number"]}


def test_the_walk_finds_the_tenant_consent_and_dashboard_urls():
    names = {name for name, _ in _object_patterns()}
    assert {
        "tenants:detail",
        "tenants:edit",
        "tenants:toggle",
        "consent:create",
        "consent:detail",
        "consent:revoke",
        "incidents:detail",
        "incidents:act",
        "incidents:action_job",
    } <= names


@pytest.fixture
def hidden_url(tenant_a):
    """URL name → a URL for an object of tenant_a, which only alice may see."""

    def build(name: str, arguments: frozenset[str]) -> str:
        kwargs = {argument: OBJECTS[argument](tenant_a) for argument in arguments}
        return reverse(name, kwargs=kwargs)

    return build


CASES = [pytest.param(name, arguments, id=name) for name, arguments in _object_patterns()]


@pytest.mark.parametrize(("name", "arguments"), CASES)
@pytest.mark.parametrize("stranger", ["bob", "charlie"])
def test_a_signed_in_stranger_gets_404(
    client, request, alice, bob, charlie, hidden_url, name, arguments, stranger
):
    url = hidden_url(name, arguments)
    client.force_login(alice)
    # The URL really points at something: its owner doesn't get a 404.
    assert client.get(url).status_code != 404, f"{url} is 404 for its owner too"
    client.force_login(request.getfixturevalue(stranger))
    statuses = {method: getattr(client, method)(url).status_code for method in ("get", "post")}
    # 405 is fine for the method a view doesn't take (e.g. GET of a POST-only view): it is
    # the same for every ID, so it confirms nothing.
    assert set(statuses.values()) <= {404, 405}, statuses
    assert 404 in statuses.values(), statuses


@pytest.mark.parametrize(("name", "arguments"), CASES)
def test_the_owner_reaches_it_with_either_method(client, alice, hidden_url, name, arguments):
    url = hidden_url(name, arguments)
    client.force_login(alice)
    statuses = {method: getattr(client, method)(url).status_code for method in ("get", "post")}
    assert 404 not in statuses.values(), statuses
    assert all(status < 500 for status in statuses.values()), statuses


@pytest.mark.parametrize(("name", "arguments"), CASES)
def test_an_anonymous_visitor_is_sent_to_sign_in(client, hidden_url, name, arguments):
    url = hidden_url(name, arguments)
    login = resolve_url(settings.LOGIN_URL)
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        assert response.status_code == 302, (method, response.status_code)
        assert urlsplit(response["Location"]).path == login


# --- The Django admin: superusers only (L1) ----------------------------------------------


def _admin_urls(tenant) -> list[str]:
    """Every admin page: index, each app, and each model's list, add, change, delete and
    history page (for an object of alice's tenant where the model has one)."""
    from django.contrib import admin

    from tests.factories import ConsentLinkFactory, IncidentFactory

    incident = IncidentFactory(tenant=tenant)
    objects = {
        "tenant": tenant,
        "consentlink": ConsentLinkFactory(tenant=tenant),
        "incident": incident,
        "syncrun": SyncRun.objects.create(tenant=tenant, started_at=timezone.now()),
    }
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse("admin:app_list", kwargs={"app_label": meta.app_label}))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
        obj = objects.get(meta.model_name) or model.objects.first()
        if obj is not None:
            for view in ("change", "delete", "history"):
                urls.append(
                    reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])
                )
    return sorted(set(urls))


def test_the_admin_is_for_superusers_only(client, alice, tenant_a, django_user_model):
    from django.contrib.auth.models import Permission

    # Staff with every view and change permission, in the tenant's own group: still no admin.
    alice.is_staff = True
    alice.save()
    alice.user_permissions.set(Permission.objects.all())
    urls = _admin_urls(tenant_a)
    assert len(urls) > 20
    client.force_login(alice)
    login = reverse("admin:login")
    for url in urls:
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 302, (url, method, response.status_code)
            assert urlsplit(response["Location"]).path == login, url
    assert tenant_a.display_name.encode() not in client.get(reverse("admin:login")).content

    root = django_user_model.objects.create_superuser("root", "r@msp.example", "pw-unused-1")
    client.force_login(root)
    changelist = client.get(reverse("admin:tenants_tenant_changelist"))
    assert changelist.status_code == 200 and tenant_a.display_name.encode() in changelist.content
