"""The summary page: open incidents by severity and tenant, the chart of incidents created per
day, links that lead to exactly what they count, and its short cache (per set of visible
tenants and day, dated on the page)."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

SUMMARY = reverse("incidents:summary")


@pytest.fixture
def cached_summary(settings):
    settings.DASHBOARD_SUMMARY_CACHE_SECONDS = 60
    cache.clear()
    yield
    cache.clear()


def open_total(client) -> int:
    return client.get(SUMMARY).context["summary"].open_total


def test_the_summary_counts_open_incidents_by_severity_and_tenant(
    alice_client, tenant_a, contoso_and_fabrikam
):
    response = alice_client.get(reverse("incidents:summary"))
    assert response.status_code == 200
    summary = response.context["summary"]
    # a3 is resolved; Fabrikam's incidents are not alice's.
    assert summary.open_by_severity == [
        ("High", 1),
        ("Medium", 1),
        ("Low", 0),
        ("Informational", 1),
        ("UnSpecified", 0),
    ]
    assert summary.open_total == 3
    assert [(row.name, row.total) for row in summary.tenants] == [("Contoso", 3)]
    html = response.content.decode()
    assert "Fabrikam" not in html
    # Each number is a link that applies its filter.
    assert 'href="/?status=open&amp;severity=High"' in html
    assert f'href="/?status=open&amp;tenant={tenant_a.pk}&amp;severity=Medium"' in html


def test_the_summary_lists_the_most_severe_tenants_first_and_caps_the_rows(
    alice_client, alice, team_b, tenant_a, tenant_b, contoso_and_fabrikam, monkeypatch
):
    alice.groups.add(team_b)
    make_incident(tenant_b, severity="High")  # Fabrikam: 2 open High, Contoso: 1
    response = alice_client.get(reverse("incidents:summary"))
    assert [row.name for row in response.context["tenant_rows"]] == ["Fabrikam", "Contoso"]
    monkeypatch.setattr("partner_portal.incidents.views.SUMMARY_TENANT_ROWS", 1)
    response = alice_client.get(reverse("incidents:summary"))
    assert [row.name for row in response.context["tenant_rows"]] == ["Fabrikam"]
    assert b"1 more tenant with open incidents" in response.content


def test_summary_links_lead_to_exactly_the_counted_incidents(
    alice_client, tenant_a, contoso_and_fabrikam
):
    response = alice_client.get(f"/?status=open&tenant={tenant_a.pk}")
    assert len(response.context["page"].incidents) == 3


def test_the_chart_counts_incidents_created_per_day_by_severity(alice_client, tenant_a, tenant_b):
    make_incident(tenant_a, severity="High", created_hours_ago=0)
    make_incident(tenant_a, severity="High", created_hours_ago=0)
    make_incident(tenant_a, severity="Low", created_hours_ago=48)
    make_incident(tenant_a, severity="Low", created_hours_ago=24 * 45)  # outside 30 days
    make_incident(tenant_b, severity="High", created_hours_ago=0)  # not alice's
    response = alice_client.get(reverse("incidents:summary"))
    chart = response.context["summary"].chart
    today = timezone.now().date()
    assert len(chart["labels"]) == 30 and chart["labels"][-1] == today.isoformat()
    series = {d["label"]: d["data"] for d in chart["datasets"]}
    assert series["High"][-1] == 2
    assert series["Low"][-3] == 1
    assert sum(series["Low"]) == 1 and sum(series["High"]) == 2
    data = response.content.decode().split('id="created-per-day-data" type="application/json">')
    assert json.loads(data[1].split("</script>")[0]) == chart
    assert b"chart-4.6.1.umd.min.js" in response.content


def test_every_bar_of_the_chart_links_to_exactly_its_incidents(alice_client, tenant_a, tenant_b):
    make_incident(tenant_a, severity="High", created_hours_ago=0)
    make_incident(tenant_a, severity="High", created_hours_ago=0)
    make_incident(tenant_a, severity="Low", created_hours_ago=0)
    make_incident(tenant_a, severity="Low", created_hours_ago=48, status="Resolved")
    make_incident(tenant_b, severity="High", created_hours_ago=0)  # not alice's
    response = alice_client.get(reverse("incidents:summary"))
    chart = response.context["summary"].chart
    for dataset in chart["datasets"]:
        assert len(dataset["urls"]) == len(chart["labels"])
        for day, n, url in zip(chart["labels"], dataset["data"], dataset["urls"], strict=True):
            assert url == (f"/?created_from={day}&created_to={day}&severity={dataset['label']}")
            if n:  # following a bar lists exactly the incidents it counts
                page = alice_client.get(url).context["page"]
                assert len(page.incidents) == n
                assert {i.severity for i in page.incidents} == {dataset["label"]}
    series = {d["label"]: d["data"] for d in chart["datasets"]}
    assert (series["High"][-1], series["Low"][-1], series["Low"][-3]) == (2, 1, 1)
    # The table under the chart carries the same links.
    html = response.content.decode()
    today = chart["labels"][-1]
    assert f'<a href="/?created_from={today}&amp;created_to={today}&amp;severity=High">2</a>' in (
        html
    )


def test_a_superuser_summary_counts_every_tenant(client, contoso_and_fabrikam):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_superuser=True))
    summary = client.get(reverse("incidents:summary")).context["summary"]
    assert summary.open_total == 5
    assert sorted((row.name, row.total) for row in summary.tenants) == [
        ("Contoso", 3),
        ("Fabrikam", 2),
    ]


def test_the_summary_is_counted_once_a_minute_and_says_when(
    alice_client, tenant_a, cached_summary, django_assert_max_num_queries
):
    make_incident(tenant_a, severity="High", status="Active")
    response = alice_client.get(SUMMARY)
    assert response.context["summary"].open_total == 1
    counted_at = response.context["counted_at"]
    assert abs((timezone.now() - counted_at).total_seconds()) < 60
    # In the viewer's time zone (UTC until they choose one), UTC on hover.
    assert (
        f'As of <time datetime="{counted_at.isoformat()}" title="{counted_at:%Y-%m-%d %H:%M:%S}'
        f' UTC">{counted_at:%Y-%m-%d %H:%M} UTC</time>'
    ) in response.content.decode()
    make_incident(tenant_a, severity="High", status="Active")
    # Within the minute: the same numbers and time, without counting again. (7: the session
    # is saved on every request, for its sliding 12-hour expiry, and the page's banner asks
    # which alert channels are failing.)
    with django_assert_max_num_queries(7):
        again = alice_client.get(SUMMARY)
    assert again.context["summary"].open_total == 1
    assert again.context["counted_at"] == counted_at


def test_each_set_of_visible_tenants_has_its_own_cached_summary(
    alice, bob, team_b, tenant_a, tenant_b, cached_summary
):
    make_incident(tenant_a, severity="High", status="Active")
    make_incident(tenant_b, severity="Low", status="Active")
    make_incident(tenant_b, severity="Low", status="Active")
    as_alice, as_bob, as_root = Client(), Client(), Client()
    as_alice.force_login(alice)
    as_bob.force_login(bob)
    as_root.force_login(UserFactory(username="root", is_superuser=True))
    assert open_total(as_alice) == 1
    assert open_total(as_bob) == 2
    assert open_total(as_root) == 3
    # Alice now sees both tenants: a different set, so counted afresh.
    alice.groups.add(team_b)
    assert open_total(as_alice) == 3


def test_with_the_cache_off_every_request_counts_afresh(alice_client, tenant_a):
    # The tests' default (tests/conftest.py), and DASHBOARD_SUMMARY_CACHE_SECONDS=0.
    make_incident(tenant_a, severity="High", status="Active")
    assert open_total(alice_client) == 1
    make_incident(tenant_a, severity="High", status="Active")
    assert open_total(alice_client) == 2


def test_only_the_most_severe_tenants_are_kept_ties_by_name(db):
    from partner_portal.incidents import dashboard
    from tests.factories import ConsentedTenantFactory

    tenants = {
        name: ConsentedTenantFactory(display_name=name) for name in ("Delta", "Alpha", "Beta")
    }
    quiet = ConsentedTenantFactory(display_name="Quiet")
    for name in ("Delta", "Alpha", "Beta"):  # one Medium each: tied, so by name
        make_incident(tenants[name], severity="Medium", status="Active")
    make_incident(tenants["Delta"], severity="Low", status="Active")  # Delta first
    make_incident(quiet, severity="High", status="Resolved")  # resolved: not open
    names = {t.pk: t.display_name for t in [*tenants.values(), quiet]}
    summary = dashboard.summary(None, names, today=timezone.now().date(), rows=2)
    assert [(row.name, row.total) for row in summary.tenants] == [("Delta", 2), ("Alpha", 1)]
    assert summary.tenants[0].by_severity == [
        ("High", 0),
        ("Medium", 1),
        ("Low", 1),
        ("Informational", 0),
        ("UnSpecified", 0),
    ]
    assert summary.tenants_with_open == 3 and summary.open_total == 4
    # Only some tenants (and none at all).
    beta_only = dashboard.summary([tenants["Beta"].pk], names, today=timezone.now().date(), rows=2)
    assert [row.name for row in beta_only.tenants] == ["Beta"] and beta_only.open_total == 1
    nothing = dashboard.summary([], names, today=timezone.now().date(), rows=2)
    assert (nothing.tenants, nothing.tenants_with_open, nothing.open_total) == ([], 0, 0)
