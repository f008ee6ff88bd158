"""The triage list's plain language and navigation: labels, incident numbers, the way back,
tenant links, positions, saved and built-in views, and each user's time zone."""

from __future__ import annotations

import re
import zoneinfo
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.urls import reverse

from partner_portal.incidents.models import Preference, SavedView
from tests.factories import ConsentedTenantFactory, UserFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

LIST = reverse("incidents:list")


def names(response) -> list[str]:
    return [incident.name for incident in response.context["page"].incidents]


# --- Plain language -----------------------------------------------------------------------


def test_the_list_and_detail_say_microsofts_values_in_words(alice_client, tenant_a):
    incident = make_incident(
        tenant_a,
        name="Words",
        severity="UnSpecified",
        status="InProgress",
        classification="InformationalExpectedActivity",
        determination="NotAvailable",
    )
    html = alice_client.get(LIST).content.decode()
    row = re.search(r'<tr data-incident="\d+">.*?</tr>', html, re.S).group()
    assert ">Unspecified<" in row and ">In progress<" in row
    assert ">Informational, expected activity<" in row
    assert "InProgress" not in row and "UnSpecified" not in row
    detail = alice_client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    text = detail.content.decode()
    for words in ("In progress", "Informational, expected activity", "Not available"):
        assert f">{words}<" in text
    assert ">NotAvailable<" not in text and ">InformationalExpectedActivity<" not in text


def test_the_filters_offer_words_and_keep_microsofts_values(alice_client, tenant_a):
    html = alice_client.get(LIST).content.decode()
    assert '<option value="InProgress">In progress</option>' in html
    assert '<option value="MultiStagedAttack">Multi-staged attack</option>' in html
    assert '<option value="TruePositive">True positive</option>' in html


def test_an_unknown_value_is_shown_as_microsoft_sent_it(alice_client, tenant_a):
    make_incident(tenant_a, status="Quarantined", severity="Critical")
    html = alice_client.get(LIST).content.decode()
    assert ">Quarantined<" in html and ">Critical<" in html


# --- Navigation ---------------------------------------------------------------------------


def test_an_incident_number_finds_the_incident(alice_client, tenant_a):
    make_incident(tenant_a, name="Needle", microsoft_id=538921)
    make_incident(tenant_a, name="Haystack", microsoft_id=538922)
    assert names(alice_client.get(LIST, {"q": "538921"})) == ["Needle"]
    assert names(alice_client.get(LIST, {"q": "#538921"})) == ["Needle"]
    # A number too big for the column is searched as text, not an error.
    assert names(alice_client.get(LIST, {"q": "9" * 40})) == []


def test_the_detail_page_leads_back_to_the_filtered_list(alice_client, contoso_and_fabrikam):
    response = alice_client.get(LIST, {"severity": "High", "sort": "-severity", "q": ""})
    incident = contoso_and_fabrikam["a1"]
    link = re.search(rf'href="(/incidents/{incident.pk}/\?list=[^"]+)"', response.content.decode())
    detail = alice_client.get(link.group(1).replace("&amp;", "&"))
    back = detail.context["back_url"]
    assert urlsplit(back).path == LIST
    assert sorted(parse_qsl(urlsplit(back).query)) == [("severity", "High"), ("sort", "-severity")]


def test_the_way_back_only_ever_leads_to_the_list(alice_client, contoso_and_fabrikam):
    incident = contoso_and_fabrikam["a1"]
    url = reverse("incidents:detail", kwargs={"incident_id": incident.pk})
    for hostile in ("https://evil.example/", "//evil.example", "javascript:alert(1)", "\x00"):
        back = alice_client.get(url, {"list": hostile}).context["back_url"]
        assert back.startswith(f"{LIST}") and "//" not in back.removeprefix(LIST)


def test_tenant_names_link_to_the_tenant(alice_client, contoso_and_fabrikam, tenant_a):
    tenant_url = reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk})
    assert f'href="{tenant_url}"' in alice_client.get(LIST).content.decode()
    summary = alice_client.get(reverse("incidents:summary")).content.decode()
    assert f'href="{tenant_url}"' in summary


def test_the_list_says_which_rows_it_shows(alice_client, tenant_a):
    for i in range(74):
        make_incident(tenant_a, name=f"n{i}", hours_ago=i + 1)
    first = alice_client.get(LIST)
    assert "1–50 of 74 incidents" in first.content.decode()
    second = alice_client.get(first.context["next_url"])
    assert "51–74 of 74 incidents" in second.content.decode()
    last = alice_client.get(first.context["last_url"])
    assert "51–74 of 74 incidents" in last.content.decode()
    back = alice_client.get(last.context["previous_url"])
    assert "1–50 of 74 incidents" in back.content.decode()
    assert names(back) == names(first)


def test_tenants_with_the_same_name_are_told_apart_in_the_filter(alice_client, team_a, tenant_a):
    other = ConsentedTenantFactory(
        display_name=tenant_a.display_name.upper(), primary_domain="", groups=[team_a]
    )
    html = alice_client.get(LIST).content.decode()
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]*)</option>', html)
    labels = dict(options)
    assert labels[str(other.pk)] == f"{other.display_name} (#{other.pk})"
    assert labels[str(tenant_a.pk)] != labels[str(other.pk)]


# --- Views --------------------------------------------------------------------------------


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


# --- Time zones ---------------------------------------------------------------------------


def test_times_are_shown_in_the_users_time_zone_with_utc_on_hover(alice, alice_client, tenant_a):
    incident = make_incident(tenant_a, hours_ago=3)
    Preference.objects.create(user=alice, time_zone="Asia/Tokyo")
    url = reverse("incidents:detail", kwargs={"incident_id": incident.pk})
    html = alice_client.get(url).content.decode()
    tokyo = incident.last_update_time.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert f"{tokyo:%Y-%m-%d %H:%M} JST" in html
    assert f'title="{incident.last_update_time:%Y-%m-%d %H:%M:%S} UTC"' in html


def test_the_browsers_time_zone_is_saved_once_and_can_be_changed(alice, alice_client):
    url = reverse("incidents:preferences")
    assert 'data-time-zone-known="0"' in alice_client.get(LIST).content.decode()
    response = alice_client.post(url, {"time_zone": "Europe/Berlin"}, HTTP_X_TIME_ZONE_AUTO="1")
    assert response.status_code == 204
    assert Preference.objects.get(user=alice).time_zone == "Europe/Berlin"
    assert 'data-time-zone-known="1"' in alice_client.get(LIST).content.decode()
    # Hostile or unknown zones are refused.
    for bad in ("Mars/Olympus", "../../etc/passwd", "\x00", ""):
        assert alice_client.post(url, {"time_zone": bad}).status_code == 200
    assert Preference.objects.get(user=alice).time_zone == "Europe/Berlin"
    alice_client.post(url, {"time_zone": "America/New_York"})
    assert Preference.objects.get(user=alice).time_zone == "America/New_York"


def test_anonymous_users_cannot_set_a_time_zone(client):
    response = client.post(reverse("incidents:preferences"), {"time_zone": "UTC"})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_user_without_e_mail_has_no_assigned_to_me_view(client, team_a, tenant_a):
    user = UserFactory(username="noemail", email="", groups=[team_a])
    client.force_login(user)
    assert "Assigned to me" not in {v["name"] for v in client.get(LIST).context["views"]}
