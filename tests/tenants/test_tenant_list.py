"""The tenant list: the user's tenants only, those needing attention first, filters, search by
domain or tenant ID, pages, and each tenant's open High and Medium incidents."""

from __future__ import annotations

import pytest
from django.urls import reverse

from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, TenantFactory
from tests.incidents.dashboard_data import make_incident


def names(response) -> list[str]:
    return [t.display_name for t in response.context["page"].object_list]


@pytest.fixture
def fleet(team_a):
    """Four tenants alice sees, one per health."""
    return {
        "ok": ConsentedTenantFactory(display_name="Alpha", groups=[team_a]),
        "attention": ConsentedTenantFactory(
            display_name="Bravo",
            consent_state=Tenant.ConsentState.MISSING_PERMISSIONS,
            groups=[team_a],
        ),
        "waiting": TenantFactory(display_name="Charlie Corp", groups=[team_a]),
        "sync-failed": ConsentedTenantFactory(
            display_name="Delta", last_sync_outcome="failed", groups=[team_a]
        ),
        "disabled": ConsentedTenantFactory(display_name="Echo", is_active=False, groups=[team_a]),
    }


def test_tenants_needing_attention_come_first(alice_client, fleet, tenant_a, tenant_b):
    response = alice_client.get("/tenants/")
    assert names(response) == ["Bravo", "Delta", "Charlie Corp", "Alpha", "Contoso", "Echo"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "brav"}, ["Bravo"]),
        ({"q": "customer"}, []),  # no domain matches: factories use customerN.onmicrosoft.com
        ({"consent_state": "missing_permissions"}, ["Bravo"]),
        ({"consent_state": "not_consented"}, ["Charlie Corp"]),
        ({"health": "attention"}, ["Bravo", "Delta"]),
        ({"health": "waiting"}, ["Charlie Corp"]),
        ({"health": "ok"}, ["Alpha", "Contoso"]),
        ({"health": "disabled"}, ["Echo"]),
    ],
)
def test_the_list_filters(alice_client, fleet, tenant_a, query, expected):
    if query.get("q") == "customer":
        Tenant.objects.update(primary_domain="")
    assert names(alice_client.get("/tenants/", query)) == expected


def test_search_finds_a_domain_and_a_tenant_id(alice_client, fleet):
    Tenant.objects.filter(pk=fleet["ok"].pk).update(primary_domain="alpha.onmicrosoft.com")
    assert names(alice_client.get("/tenants/", {"q": "ALPHA.onmicrosoft"})) == ["Alpha"]
    tid = str(fleet["sync-failed"].entra_tenant_id)
    assert names(alice_client.get("/tenants/", {"q": tid})) == ["Delta"]
    assert names(alice_client.get("/tenants/", {"q": tid[:8]})) == ["Delta"]


def test_the_list_is_paginated_and_keeps_the_filters(alice_client, team_a):
    for i in range(30):
        TenantFactory(display_name=f"Tenant {i:02}", groups=[team_a])
    first = alice_client.get("/tenants/", {"q": "Tenant"})
    assert len(names(first)) == 25
    assert 'href="?q=Tenant&amp;page=2"' in first.content.decode()
    second = alice_client.get("/tenants/", {"q": "Tenant", "page": 2})
    assert names(second) == [f"Tenant {i:02}" for i in range(25, 30)]


def test_the_list_shows_only_the_users_tenants(alice_client, tenant_a, tenant_b):
    assert names(alice_client.get("/tenants/")) == ["Contoso"]


def test_the_tenant_list_shows_open_high_and_medium_counts(
    alice_client, tenant_a, team_a, django_assert_max_num_queries
):
    for severity, status_ in [("High", "Active"), ("High", "InProgress"), ("High", "Resolved")]:
        make_incident(tenant_a, severity=severity, status=status_)
    make_incident(tenant_a, severity="Medium", status="Active")
    quiet = ConsentedTenantFactory(display_name="Quiet", groups=[team_a])
    with django_assert_max_num_queries(20) as captured:
        response = alice_client.get(reverse("tenants:list"))
    # From the maintained counts: counting the incidents cost ~0.6 s a page at 1M.
    assert not any('"incidents_incident"' in q["sql"] for q in captured.captured_queries)
    tenants = {t.pk: t for t in response.context["page"]}
    assert (tenants[tenant_a.pk].open_high, tenants[tenant_a.pk].open_medium) == (2, 1)
    assert (tenants[quiet.pk].open_high, tenants[quiet.pk].open_medium) == (0, 0)
    html = response.content.decode()
    assert f"?tenant={tenant_a.pk}&amp;status=open&amp;severity=High" in html
