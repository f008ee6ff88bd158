"""The incident list over htmx (only the table, the URL pushed and kept) and its "new since"
count."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from partner_portal.incidents.dashboard import new_since_count, visible_incidents
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_htmx_requests_get_only_the_table_and_others_the_whole_page(
    alice_client, contoso_and_fabrikam
):
    url = reverse("incidents:list") + "?severity=High"
    full = alice_client.get(url)
    assert b"<form" in full.content and b'id="incident-table"' in full.content
    partial = alice_client.get(url, **HTMX)
    assert b'role="search"' not in partial.content and b"<html" not in partial.content
    assert b"Ransomware on FIN-01" in partial.content
    assert b"Phishing mail reported" not in partial.content
    # The back button after htmx's history cache is gone asks for the whole page.
    restore = alice_client.get(url, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HTMX)
    assert b"<form" in restore.content


def test_htmx_responses_push_the_url_without_empty_fields(alice_client, contoso_and_fabrikam):
    response = alice_client.get(
        reverse("incidents:list"), {"q": "", "severity": "High", "status": "", "after": ""}, **HTMX
    )
    assert response["HX-Push-Url"] == "/?severity=High"


def test_the_form_and_links_keep_every_filter_in_the_url(alice_client, contoso_and_fabrikam):
    html = alice_client.get(
        reverse("incidents:list"), {"severity": "High", "q": "ransom"}
    ).content.decode()
    assert 'method="get"' in html
    assert 'hx-push-url="true"' in html
    assert "/incidents/export.csv?severity=High&amp;q=ransom" in html
    assert 'value="ransom"' in html


def test_the_new_since_fragment_counts_updates_after_the_page_opened_within_the_filters(
    alice_client, tenant_a, tenant_b, contoso_and_fabrikam
):
    opened = timezone.now() - timedelta(minutes=5)
    make_incident(tenant_a, name="New high", severity="High", hours_ago=0)
    make_incident(tenant_a, name="New low", severity="Low", hours_ago=0)
    make_incident(tenant_b, name="Fabrikam new", severity="High", hours_ago=0)
    url = reverse("incidents:new_count")
    response = alice_client.get(url, {"since": opened.isoformat()})
    assert response.status_code == 200
    assert b"2 new or updated since you opened this page" in response.content
    response = alice_client.get(url, {"since": opened.isoformat(), "severity": "High"})
    assert b"1 new or updated" in response.content
    assert b"severity=High" in response.content  # "show" keeps the filters
    assert b"since=" not in response.content


def test_the_new_since_fragment_is_empty_when_nothing_changed(alice_client, contoso_and_fabrikam):
    url = reverse("incidents:new_count")
    response = alice_client.get(url, {"since": timezone.now().isoformat()})
    assert response.content == b""  # not even whitespace: CSS :empty hides the indicator
    assert alice_client.get(url, {"since": "garbage"}).content.strip() == b""


def test_the_list_polls_the_new_since_count_with_its_filters_and_opened_at(
    alice_client, contoso_and_fabrikam, settings
):
    settings.DASHBOARD_POLL_SECONDS = 7
    html = alice_client.get(reverse("incidents:list"), {"severity": "Low"}).content.decode()
    assert 'hx-trigger="every 7s"' in html
    assert "/incidents/new-count/?severity=Low&amp;since=" in html


def test_alice_never_counts_fabrikam_incidents_as_new(alice, tenant_b):
    opened = timezone.now() - timedelta(minutes=1)
    make_incident(tenant_b, hours_ago=0)
    assert new_since_count(visible_incidents(alice), opened) == (0, False)
