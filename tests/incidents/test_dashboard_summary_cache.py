"""The summary page's short cache: per set of visible tenants and day, dated on the page."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from tests.incidents.dashboard_data import make_incident

SUMMARY = reverse("incidents:summary")


@pytest.fixture
def cached_summary(settings):
    settings.DASHBOARD_SUMMARY_CACHE_SECONDS = 60
    cache.clear()
    yield
    cache.clear()


def open_total(client) -> int:
    return client.get(SUMMARY).context["summary"].open_total


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
