"""The CSV export: exactly the filtered rows of the user's tenants, words beside Microsoft's
values, no spreadsheet formulas."""

from __future__ import annotations

import csv
import io

from django.urls import reverse

from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam


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
