"""The dashboard's other views: htmx partials, new-since count, summary, export, detail."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from partner_portal.incidents.dashboard import new_since_count, visible_incidents
from tests.factories import AlertFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

HTMX = {"HTTP_HX_REQUEST": "true"}


# --- htmx ---------------------------------------------------------------------------------


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


# --- new since ----------------------------------------------------------------------------


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


# --- summary ------------------------------------------------------------------------------


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


# --- export -------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_export_streams_exactly_the_filtered_rows(alice_client, contoso_and_fabrikam):
    response = alice_client.get(reverse("incidents:export"), {"status": "open", "sort": "created"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="incidents-')
    rows = read_csv(response)
    assert rows[0][:6] == [
        "Tenant",
        "Incident ID",
        "Name",
        "Severity",
        "Severity (Microsoft)",
        "Status",
    ]
    assert [row[2] for row in rows[1:]] == [
        "Suspicious PowerShell",
        "Phishing mail reported",
        "Ransomware on FIN-01",
    ]
    a2 = contoso_and_fabrikam["a2"]
    assert rows[2] == [
        "Contoso",
        str(a2.microsoft_id),
        "Phishing mail reported",
        "Medium",
        "Medium",
        "In progress",
        "InProgress",
        "",
        "",
        "",
        "",
        "secop@contoso.com",
        "0",
        a2.created_time.isoformat(),
        a2.last_update_time.isoformat(),
        "",
    ]


def test_the_export_gives_words_beside_microsofts_values(alice_client, tenant_a):
    make_incident(
        tenant_a,
        severity="UnSpecified",
        status="InProgress",
        classification="TruePositive",
        determination="MultiStagedAttack",
    )
    make_incident(tenant_a, status="SomethingNew", hours_ago=2)
    header, known, unknown = read_csv(alice_client.get(reverse("incidents:export")))
    known = dict(zip(header, known, strict=True))
    assert known["Severity"] == "Unspecified"
    assert known["Severity (Microsoft)"] == "UnSpecified"
    assert (known["Status"], known["Status (Microsoft)"]) == ("In progress", "InProgress")
    assert known["Classification"] == "True positive"
    assert known["Classification (Microsoft)"] == "TruePositive"
    assert known["Determination"] == "Multi-staged attack"
    assert known["Determination (Microsoft)"] == "MultiStagedAttack"
    # A value Microsoft adds later is shown as sent, in both columns.
    unknown = dict(zip(header, unknown, strict=True))
    assert unknown["Status"] == unknown["Status (Microsoft)"] == "SomethingNew"


def test_the_export_never_includes_other_tenants(alice_client, contoso_and_fabrikam):
    rows = read_csv(alice_client.get(reverse("incidents:export")))
    assert {row[0] for row in rows[1:]} == {"Contoso"}
    assert len(rows) == 5


def test_the_export_neutralises_spreadsheet_formulas(alice_client, tenant_a):
    make_incident(tenant_a, name='=HYPERLINK("http://evil.example","x")')
    rows = read_csv(alice_client.get(reverse("incidents:export")))
    assert rows[1][2] == '\'=HYPERLINK("http://evil.example","x")'


# --- detail -------------------------------------------------------------------------------

DEVICE = {
    "mdatpDeviceId": "24c222b0b60fe148eeece49ac83910cc6a7ef491",
    "deviceDnsName": "fin-01.contoso.local",
    "osPlatform": "Windows11",
    "riskScore": "High",
    "aadDeviceId": None,
}
USER = {"entityType": "User", "userPrincipalName": "j.doe@contoso.com", "accountName": "jdoe"}
IP = {"entityType": "Ip", "ipAddress": "203.0.113.7", "url": None}


def test_the_detail_page_shows_every_field_alerts_devices_and_entities(
    alice_client, contoso_and_fabrikam
):
    incident = contoso_and_fabrikam["a1"]
    incident.tags = ["ransomware", "vip"]
    incident.comments = [
        {"comment": "Isolated the host", "createdBy": "secop@contoso.com", "createdTime": "x"}
    ]
    incident.portal_url = "https://security.microsoft.com/incidents/1?tid=abc"
    incident.assigned_to = "secop@contoso.com"
    incident.classification = "TruePositive"
    incident.determination = "Malware"
    incident.raw = {"incidentId": incident.microsoft_id, "incidentName": incident.name}
    incident.save()
    AlertFactory(
        incident=incident,
        title="Encrypted files",
        category="Impact",
        status="New",
        detection_source="WindowsDefenderAv",
        service_source="MicrosoftDefenderATP",
        mitre_techniques=["T1486", "T1490"],
        first_activity=timezone.now() - timedelta(hours=3),
        last_activity=timezone.now() - timedelta(hours=2),
        devices=[DEVICE],
        entities=[USER, IP],
    )
    AlertFactory(incident=incident, title="Second alert", devices=[DEVICE], entities=[USER])
    url = reverse("incidents:detail", kwargs={"incident_id": incident.pk})
    response = alice_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for text in [
        "Ransomware on FIN-01",
        "Contoso",
        str(incident.microsoft_id),
        "True positive",
        "Malware",
        "secop@contoso.com",
        "Ransomware behavior detected",
        "Encrypted files",
        "Second alert",
        "Impact",
        "WindowsDefenderAv",
        "MicrosoftDefenderATP",
        "T1486, T1490",
        "fin-01.contoso.local",
        "j.doe@contoso.com",
        "203.0.113.7",
        "ransomware</li>",
        "Isolated the host",
        "Last synced",
        'href="https://security.microsoft.com/incidents/1?tid=abc"',
        "Raw JSON",
        "&quot;incidentName&quot;: &quot;Ransomware on FIN-01&quot;",
    ]:
        assert text in html, text
    # Devices and entities are listed once although two alerts name them.
    assert len(response.context["devices"]) == 1
    assert [
        (kind, [e.label for e in entities]) for kind, entities in response.context["entity_groups"]
    ] == [
        ("Ip", ["203.0.113.7"]),
        ("User", ["j.doe@contoso.com"]),
    ]


def test_a_portal_url_that_is_not_https_is_not_linked(alice_client, contoso_and_fabrikam):
    incident = contoso_and_fabrikam["a1"]
    incident.portal_url = "javascript:alert(1)"
    incident.save()
    html = alice_client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    assert b"javascript:" not in html.content


def test_another_tenants_incident_is_not_found(alice_client, contoso_and_fabrikam):
    b1 = contoso_and_fabrikam["b1"]
    response = alice_client.get(reverse("incidents:detail", kwargs={"incident_id": b1.pk}))
    assert response.status_code == 404


# --- sign-in ------------------------------------------------------------------------------


def test_every_dashboard_page_sends_anonymous_visitors_to_sign_in(client, contoso_and_fabrikam):
    for name in ("list", "summary", "new_count", "export"):
        response = client.get(reverse(f"incidents:{name}"))
        assert response.status_code == 302, name
        assert response["Location"].startswith("/login/?next="), name


def test_a_user_without_tenants_gets_empty_summary_export_and_count(
    client, charlie, contoso_and_fabrikam
):
    client.force_login(charlie)
    summary = client.get(reverse("incidents:summary")).context["summary"]
    assert summary.open_total == 0 and summary.tenants == []
    assert len(read_csv(client.get(reverse("incidents:export")))) == 1  # the header only
    since = (timezone.now() - timedelta(days=400)).isoformat()
    count = client.get(reverse("incidents:new_count"), {"since": since})
    assert count.content.strip() == b""
