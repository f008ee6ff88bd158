"""The Graph parser over Microsoft's published Graph examples (tests/fixtures/microsoft/graph-*):
the Defender vocabulary, comments' names, and evidence mapped onto devices and entities."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from partner_portal.microsoft import errors
from partner_portal.microsoft.graph import (
    evidence_type,
    parse_graph_incident,
    parse_graph_list,
    split_evidence,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "microsoft"
INCIDENT_FILES = [
    "graph-get-incident.example.json",
    "graph-update-incident.response.json",
    "graph-update-incident.v2022.response.json",
]
LIST_FILES = sorted(p.name for p in FIXTURES.glob("graph-list-incidents*.json"))


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", LIST_FILES)
def test_every_published_list_example_parses(name):
    body = load(name)
    incidents, next_link = parse_graph_list(body)
    assert next_link is None
    assert [i.incident_id for i in incidents] == [int(v["id"]) for v in body["value"]]
    for incident, raw in zip(incidents, body["value"], strict=True):
        # Values in the Defender vocabulary, whatever the example's case.
        assert incident.severity in {"High", "Medium", "Low", "Informational", "UnSpecified"}
        assert incident.status in {"Active", "InProgress", "Resolved", "Redirected"}
        assert incident.raw == {k: v for k, v in raw.items() if k != "alerts"}
        assert [a.alert_id for a in incident.alerts] == [a["id"] for a in raw.get("alerts", [])]
        for alert, raw_alert in zip(incident.alerts, raw.get("alerts", []), strict=True):
            evidence = raw_alert.get("evidence", [])
            assert len(alert.devices) + len(alert.entities) == len(evidence)
            assert alert.raw["evidence"] == evidence


@pytest.mark.parametrize("name", INCIDENT_FILES)
def test_every_published_incident_example_parses(name):
    incident = parse_graph_incident(load(name))
    assert incident.incident_id in (29, 2972395)
    assert incident.last_update_time.tzinfo is UTC


def test_the_2026_example_field_by_field():
    (incident,), _ = parse_graph_list(load("graph-list-incidents-expand-alerts.example.json"))
    assert incident.incident_id == 29
    assert incident.name.startswith("Multi-stage incident involving Execution")
    assert (incident.severity, incident.status) == ("High", "Active")
    assert (incident.classification, incident.determination) == (
        "TruePositive",
        "MultiStagedAttack",
    )
    assert incident.assigned_to == "admin@contoso.com"
    assert incident.tags == ["Demo"]
    assert incident.created_time == datetime(2026, 1, 22, 12, 9, 23, 143333, tzinfo=UTC)
    assert incident.incident_uri.startswith("https://security.microsoft.com/incident2/29/")
    (alert,) = incident.alerts
    assert alert.alert_id == "da09e47ccc-b74a-45bb-985f-8d6c077b70b6_1"
    assert (alert.severity, alert.status) == ("Medium", "New")
    assert alert.mitre_techniques == ["T1546.003"]
    assert alert.first_activity == datetime(2026, 1, 22, 12, 8, 16, 140401, tzinfo=UTC)
    (device,) = alert.devices
    assert device["deviceDnsName"] and device["mdatpDeviceId"]
    kinds = [e["entityType"] for e in alert.entities]
    assert kinds == ["User", "Ip", "Process", "Process"]
    user = alert.entities[0]
    assert user["accountName"]
    process = alert.entities[2]
    assert process["processId"] and process["fileName"]


def test_the_2022_example_keeps_older_comment_names_and_unknown_evidence():
    (incident,), _ = parse_graph_list(load("graph-list-incidents-expand-alerts.v2022.example.json"))
    assert incident.comments == [
        {
            "comment": "Demo incident",
            "createdBy": "DavidS@contoso.onmicrosoft.com",
            "createdTime": "2021-09-30T12:07:37.2756993Z",
        }
    ]
    kinds = [e["entityType"] for e in incident.alerts[0].entities]
    assert kinds == ["File", "Process", "RegistryKey"]
    registry = incident.alerts[0].entities[2]
    assert all(isinstance(v, str | int | float) for v in registry.values())


def test_comments_take_the_csdls_names():
    comment = {"comment": "hi", "createdByDisplayName": "Ann"}
    comment["createdDateTime"] = "2026-01-01T00:00:00Z"
    data = load("graph-get-incident.example.json") | {"comments": [comment]}
    incident = parse_graph_incident(data)
    assert incident.comments == [
        {"comment": "hi", "createdBy": "Ann", "createdTime": "2026-01-01T00:00:00Z"}
    ]


def test_hostile_evidence_is_skipped_item_by_item():
    devices, entities = split_evidence(
        [
            None,
            "text",
            {"@odata.type": 5},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "10.0.0.1"},
            {"@odata.type": "#microsoft.graph.security.deviceEvidence", "userAccount": []},
        ]
    )
    assert devices == [{}]
    assert entities == [{"entityType": "Other"}, {"entityType": "Ip", "ipAddress": "10.0.0.1"}]
    assert split_evidence("not a list") == ([], [])
    assert evidence_type({"@odata.type": "#microsoft.graph.security.urlEvidence"}) == "urlEvidence"


def test_an_enum_graph_adds_later_is_kept_as_sent():
    data = load("graph-get-incident.example.json") | {"severity": "critical", "status": "new"}
    incident = parse_graph_incident(data)
    assert (incident.severity, incident.status) == ("critical", "new")


def test_a_list_without_value_is_a_bad_response():
    with pytest.raises(errors.BadResponse):
        parse_graph_list({"error": "x"})
