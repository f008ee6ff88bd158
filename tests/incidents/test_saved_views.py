"""The list's views: built-in ones with their counts, each user's saved views (kept, changed only
by their owner, shared by URL)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from partner_portal.incidents.models import SavedView
from tests.factories import UserFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

LIST = reverse("incidents:list")


def test_built_in_views_are_offered_with_their_counts(alice, alice_client, tenant_a):
    make_incident(tenant_a, severity="High", status="Active", assigned_to="", hours_ago=0.2)
    make_incident(tenant_a, severity="High", status="Active", assigned_to=alice.email)
    make_incident(tenant_a, severity="Low", status="Resolved", hours_ago=5)
    views = {v["name"]: v for v in alice_client.get(LIST).context["views"]}
    assert views["Needs attention"]["count"] == 1
    assert views["Assigned to me"]["count"] == 1
    assert views["Changed in the last hour"]["count"] == 1
    shown = alice_client.get(views["Needs attention"]["url"])
    assert len(shown.context["page"].incidents) == 1
    assert {v["name"]: v["current"] for v in shown.context["views"]}["Needs attention"]


def test_a_saved_view_round_trip(alice, alice_client, contoso_and_fabrikam):
    query = "severity=High&sort=-severity&after=garbage"
    response = alice_client.post(
        reverse("incidents:view_save"), {"name": "Hot", "query": query, "default": "on"}
    )
    view = SavedView.objects.get(user=alice, name="Hot")
    assert view.query == "severity=High&sort=-severity"  # paging is never part of a view
    assert view.is_default
    assert response["Location"] == f"{LIST}?{view.query}"
    # The default opens on a bare visit; "Clear" still shows everything.
    assert alice_client.get(LIST)["Location"] == f"{LIST}?{view.query}"
    assert len(alice_client.get(LIST, {"sort": "-updated"}).context["page"].incidents) == 4
    listed = {v["name"]: v for v in alice_client.get(LIST, {"sort": "-updated"}).context["views"]}
    assert listed["Hot"]["count"] == 1
    # Saving under the same name replaces the query; one default per user.
    alice_client.post(reverse("incidents:view_save"), {"name": "Other", "default": "on"})
    view.refresh_from_db()
    assert not view.is_default
    assert SavedView.objects.filter(user=alice, is_default=True).count() == 1
    alice_client.post(reverse("incidents:view_delete", kwargs={"view_id": view.pk}))
    assert not SavedView.objects.filter(pk=view.pk).exists()


@pytest.mark.parametrize("action", ["view_delete", "view_default"])
def test_nobody_else_can_change_a_saved_view(client, alice, bob, action):
    view = SavedView.objects.create(user=alice, name="Mine", query="severity=High")
    client.force_login(bob)
    assert (
        client.post(reverse(f"incidents:{action}", kwargs={"view_id": view.pk})).status_code == 404
    )
    assert (
        client.get(reverse(f"incidents:{action}", kwargs={"view_id": view.pk})).status_code == 405
    )
    view.refresh_from_db()
    assert not view.is_default


def test_a_view_is_shared_by_its_url(client, alice, bob, team_a, tenant_a):
    make_incident(tenant_a, severity="High")
    bob.groups.add(team_a)
    view = SavedView.objects.create(user=alice, name="Mine", query="severity=High")
    client.force_login(bob)
    response = client.get(f"{LIST}?{view.query}")
    assert len(response.context["page"].incidents) == 1


def test_a_user_without_e_mail_has_no_assigned_to_me_view(client, team_a, tenant_a):
    user = UserFactory(username="noemail", email="", groups=[team_a])
    client.force_login(user)
    assert "Assigned to me" not in {v["name"] for v in client.get(LIST).context["views"]}
