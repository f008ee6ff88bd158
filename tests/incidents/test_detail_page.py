"""The incident page: every field, its alerts, devices and entities; only https links to
Microsoft's portal; another tenant's incident is not found."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from tests.factories import AlertFactory
from tests.incidents import dashboard_data

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

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
        "Last stored",
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


def test_a_merged_incident_links_to_the_one_it_was_merged_into_in_its_own_tenant(
    alice_client, contoso_and_fabrikam
):
    merged, into = contoso_and_fabrikam["a2"], contoso_and_fabrikam["a1"]
    # Fabrikam has an incident of the same number: incident IDs are unique per tenant only.
    contoso_and_fabrikam["b1"].microsoft_id = into.microsoft_id
    contoso_and_fabrikam["b1"].save()
    merged.redirect_incident_id = into.microsoft_id
    merged.save()
    page = alice_client.get(reverse("incidents:detail", args=[merged.pk])).content.decode()
    link = f'<a href="{reverse("incidents:detail", args=[into.pk])}" data-merged-into>'
    assert f"{link}Incident {into.microsoft_id}</a>" in page
    assert reverse("incidents:detail", args=[contoso_and_fabrikam["b1"].pk]) not in page
    # Merged into one not synced yet: its number, no link.
    merged.redirect_incident_id = 987654
    merged.save()
    page = alice_client.get(reverse("incidents:detail", args=[merged.pk])).content.decode()
    assert "Incident 987654 (not synced yet)" in page and "data-merged-into" not in page
