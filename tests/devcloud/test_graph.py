"""Microsoft Graph security incidents: the same incidents in Graph's shape."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from devcloud.timefmt import parse_ticks

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture
def graph(devcloud, setup, http):
    devcloud.set_consent(
        setup.tenant_id,
        setup.client_id,
        roles=["Incident.Read.All", "SecurityIncident.ReadWrite.All"],
    )
    devcloud.generate_incidents(setup.tenant_id, 120, seed=11)
    headers = {"Authorization": f"Bearer {setup.token(http, scope=GRAPH_SCOPE)}"}
    base = f"{setup.base_url}/v1.0/security/incidents"

    class Graph:
        def get(self, path="", **params):
            return http.get(base + path, params=params or None, headers=headers)

        def patch(self, path, body):
            return http.patch(base + path, json=body, headers=headers)

        def post(self, path, body):
            return http.post(base + path, json=body, headers=headers)

        def all(self, **params):
            items, resp = [], self.get(**params)
            while True:
                assert resp.status_code == 200, resp.text
                body = resp.json()
                items += body["value"]
                if "@odata.nextLink" not in body:
                    return items
                resp = http.get(body["@odata.nextLink"], headers=headers)

    return Graph()


def test_tokens_carry_only_the_roles_of_their_resource(devcloud, setup, http, graph):
    graph_claims = jwt.decode(
        setup.token(http, scope=GRAPH_SCOPE), options={"verify_signature": False}
    )
    assert graph_claims["aud"] == "https://graph.microsoft.com"
    assert graph_claims["roles"] == ["SecurityIncident.ReadWrite.All"]
    defender_claims = jwt.decode(setup.token(http), options={"verify_signature": False})
    assert defender_claims["roles"] == ["Incident.Read.All"]


def test_paging_returns_every_incident_newest_first(devcloud, setup, graph):
    truth = devcloud.incidents(setup.tenant_id)
    first = graph.get(**{"$top": 50}).json()
    assert first["@odata.context"] == f"{setup.base_url}/v1.0/$metadata#security/incidents"
    assert first["@odata.nextLink"].startswith(f"{setup.base_url}/v1.0/security/incidents?")
    items = graph.all(**{"$top": 50})
    assert [i["id"] for i in items] == [str(i["incidentId"]) for i in truth]
    assert items[0]["lastUpdateDateTime"] == truth[0]["lastUpdateTime"]


def test_top_above_50_is_400(graph):
    resp = graph.get(**{"$top": 51})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "BadRequest"
    assert "The limit of '50' for Top query has been exceeded" in error["message"]
    assert "innerError" in error


def test_an_incident_looks_like_the_graph_example(devcloud, setup, graph):
    example = json.loads((FIXTURES / "graph-list-incidents-expand-alerts.example.json").read_text())
    ex_incident = example["value"][0]
    ex_alert = ex_incident["alerts"][0]
    body = graph.get(**{"$top": 20, "$expand": "alerts"}).json()
    assert body["@odata.context"].endswith("#security/incidents(alerts())")
    evidence_types = set()
    for incident in body["value"]:
        assert set(incident) == set(ex_incident)
        assert incident["status"] in ("active", "inProgress", "resolved", "redirected")
        assert incident["severity"] in ("informational", "low", "medium", "high")
        for alert in incident["alerts"]:
            assert set(alert) <= set(ex_alert) | {"providerAlertId"}
            assert alert["incidentId"] == incident["id"]
            evidence_types |= {e["@odata.type"] for e in alert["evidence"]}
    assert "#microsoft.graph.security.userEvidence" in evidence_types
    assert len(evidence_types) >= 4


def test_filters_use_graph_names_and_camel_case(devcloud, setup, graph):
    truth = devcloud.incidents(setup.tenant_id)
    active = graph.all(**{"$filter": "status eq 'active'"})
    assert [i["id"] for i in active] == [
        str(i["incidentId"]) for i in truth if i["status"] == "Active"
    ]
    pivot = truth[30]["lastUpdateTime"]
    since = graph.all(**{"$filter": f"lastUpdateDateTime ge {pivot} and severity eq 'high'"})
    assert [i["id"] for i in since] == [
        str(i["incidentId"])
        for i in truth
        if parse_ticks(i["lastUpdateTime"]) >= parse_ticks(pivot) and i["severity"] == "High"
    ]
    assert graph.get(**{"$filter": "lastUpdateTime ge 2026-01-01T00:00:00Z"}).status_code == 400


def test_get_patch_and_comment(devcloud, setup, graph):
    incident_id = str(devcloud.incidents(setup.tenant_id)[-1]["incidentId"])
    got = graph.get(f"/{incident_id}")
    assert got.status_code == 200 and got.json()["id"] == incident_id
    resp = graph.patch(
        f"/{incident_id}",
        {
            "classification": "truePositive",
            "determination": "multiStagedAttack",
            "status": "resolved",
            "customTags": ["Demo"],
            "resolvingComment": "done",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["@odata.context"].endswith("#security/incidents/$entity")
    assert (body["status"], body["classification"], body["determination"]) == (
        "resolved",
        "truePositive",
        "multiStagedAttack",
    )
    assert body["resolvingComment"] == "done" and body["lastModifiedBy"].startswith("API-App:")
    defender_view = devcloud.incidents(setup.tenant_id)[0]
    assert str(defender_view["incidentId"]) == incident_id
    assert defender_view["status"] == "Resolved" and defender_view["tags"] == ["Demo"]
    comments = graph.post(
        f"/{incident_id}/comments",
        {"@odata.type": "microsoft.graph.security.alertComment", "comment": "checked"},
    )
    assert comments.status_code == 200
    assert comments.json()["value"][-1]["comment"] == "checked"
    assert graph.get("/1").status_code == 404


def test_a_defender_token_is_401_on_graph_and_missing_roles_are_403(devcloud, setup, http):
    devcloud.set_consent(setup.tenant_id, setup.client_id, roles=["Incident.Read.All"])
    url = f"{setup.base_url}/v1.0/security/incidents"
    resp = http.get(url, headers={"Authorization": f"Bearer {setup.token(http)}"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
    no_roles = setup.token(http, scope=GRAPH_SCOPE)
    resp = http.get(url, headers={"Authorization": f"Bearer {no_roles}"})
    assert resp.status_code == 403
