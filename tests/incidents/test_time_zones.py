"""Times in each user's own time zone (UTC on hover), the browser's zone saved once."""

from __future__ import annotations

import zoneinfo

from django.urls import reverse

from partner_portal.incidents.models import Preference
from tests.incidents.dashboard_data import make_incident

LIST = reverse("incidents:list")


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
