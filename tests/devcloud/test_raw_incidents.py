"""devcloud's raw-payload control route: an incident stored as exact JSON text is served byte
for byte by the list and get-one endpoints (Defender and Graph) and by the ground truth, so
tests can send what Microsoft might: NULs, lone surrogates, odd IDs, huge pages of alerts."""

from __future__ import annotations

import json

import pytest

from devcloud.client import DevCloudError

pytestmark = pytest.mark.integration

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# JSON escapes, written as the six characters Microsoft would send.
NUL_AND_SURROGATE = (
    '{"incidentId": 9000001, "incidentName": "a\\u0000b", "lastUpdateTime": '
    '"2030-01-02T03:04:05.1234567Z", "comments": [{"comment": "smile \\ud83d end"}], '
    '"alerts": [{"title": "no alertId here", "entities": [{"entityType": "Registry", '
    '"registryValue": "x\\u0000y"}]}]}'
)


@pytest.fixture
def api(devcloud, consented, http):
    devcloud.generate_incidents(consented.tenant_id, 5, seed=3)
    headers = {"Authorization": f"Bearer {consented.token(http)}"}

    def get(path="/api/incidents", **params):
        resp = http.get(f"{consented.base_url}{path}", params=params or None, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp

    return get


def test_a_payload_with_nul_and_a_lone_surrogate_is_served_exactly_as_given(
    devcloud, consented, api
):
    stored = devcloud.put_raw_incident(consented.tenant_id, NUL_AND_SURROGATE)
    assert stored["key"] == 9000001
    raw = NUL_AND_SURROGATE.encode()

    listed = api()
    assert raw in listed.content  # the very bytes, not a re-serialization
    first = listed.json()["value"][0]  # lastUpdateTime 2030: the newest
    assert first["incidentName"] == "a\x00b"
    assert first["comments"][0]["comment"] == "smile \ud83d end"

    one = api("/api/incidents/9000001")
    assert one.content.endswith(raw[1:])
    assert one.json()["@odata.context"].endswith("/api/$metadata#Incidents/$entity")

    truth = devcloud.incidents(consented.tenant_id)
    assert len(truth) == 6
    assert truth[0] == json.loads(NUL_AND_SURROGATE)


@pytest.mark.parametrize(
    ("id_json", "path_id", "key"),
    [
        ('"INC-abc"', "INC-abc", "INC-abc"),
        ("123456789012345678901234567890", "123456789012345678901234567890", None),
        ("-5", "-5", -5),
        ("1.5", "1.5", "1.5"),
        ("null", "null", "null"),
    ],
)
def test_odd_ids_are_listed_and_fetched_by_their_text(
    devcloud, consented, api, id_json, path_id, key
):
    payload = f'{{"incidentId": {id_json}, "lastUpdateTime": "2031-01-01T00:00:00Z"}}'
    stored = devcloud.put_raw_incident(consented.tenant_id, payload)
    assert stored["key"] == (json.loads(id_json) if key is None else key)
    assert api().content.find(payload.encode()) > 0
    assert api(f"/api/incidents/{path_id}").content.endswith(payload.encode()[1:])


def test_an_incident_without_any_id_gets_a_key(devcloud, consented, api):
    stored = devcloud.put_raw_incident(consented.tenant_id, '{"incidentName": "who am I"}')
    assert stored["key"] == "devcloud-noid-1"
    assert api(f"/api/incidents/{stored['key']}").json()["incidentName"] == "who am I"


def test_five_hundred_alerts_and_year_0001_dates(devcloud, consented, api):
    alerts = [
        {
            "alertId": f"da{'x' * 295}{n:03d}",
            "creationTime": "0001-01-01T00:00:00+05:00",
        }
        for n in range(500)
    ]
    payload = json.dumps(
        {
            "incidentId": 77,
            "createdTime": "0001-01-01T00:00:00+05:00",
            "lastUpdateTime": "0001-01-01T00:00:00+05:00",
            "alerts": alerts,
        }
    )
    devcloud.put_raw_incident(consented.tenant_id, payload)
    # An unusable lastUpdateTime sorts as "now": the newest, so a sync sees it.
    body = api(**{"$top": 1}).json()
    assert body["value"][0]["incidentId"] == 77
    assert len(body["value"][0]["alerts"]) == 500


def test_updated_places_the_payload_for_ordering_and_filter(devcloud, consented, api):
    devcloud.put_raw_incident(
        consented.tenant_id,
        '{"incidentId": 5, "lastUpdateTime": "garbage"}',
        updated="2001-01-01T00:00:00Z",
    )
    assert api().json()["value"][-1]["incidentId"] == 5
    window = "lastUpdateTime ge 2000-12-31T00:00:00Z and lastUpdateTime lt 2001-01-02T00:00:00Z"
    since = api(**{"$filter": window})
    assert [i["incidentId"] for i in since.json()["value"]] == [5]


def test_the_same_key_replaces_the_incident(devcloud, consented, api):
    devcloud.put_raw_incident(consented.tenant_id, '{"incidentId": "X", "v": 1}')
    devcloud.put_raw_incident(consented.tenant_id, '{"incidentId": "X", "v": 2}')
    assert api("/api/incidents/X").json()["v"] == 2
    assert len(devcloud.incidents(consented.tenant_id)) == 6


def test_graph_serves_the_payload_exactly_too(devcloud, consented, http):
    devcloud.create_app(
        client_id=consented.client_id,
        display_name="Graph app",
        secrets=[{"value": consented.secret}],
        required_permissions=["SecurityIncident.Read.All"],
    )
    devcloud.set_consent(consented.tenant_id, consented.client_id, state="consented")
    token = consented.token(http, scope=GRAPH_SCOPE)
    payload = '{"id": "g-1", "displayName": "\\ud83d"}'
    devcloud.put_raw_incident(consented.tenant_id, payload)
    headers = {"Authorization": f"Bearer {token}"}
    listed = http.get(f"{consented.base_url}/v1.0/security/incidents", headers=headers)
    assert payload.encode() in listed.content
    one = http.get(f"{consented.base_url}/v1.0/security/incidents/g-1", headers=headers)
    assert one.content.endswith(payload.encode()[1:])


def test_a_patch_of_a_raw_payload_reserializes_it_with_escapes(devcloud, consented, http):
    devcloud.create_app(
        client_id=consented.client_id,
        secrets=[{"value": consented.secret}],
        required_permissions=["Incident.ReadWrite.All"],
    )
    devcloud.set_consent(consented.tenant_id, consented.client_id, state="consented")
    token = consented.token(http)
    devcloud.put_raw_incident(consented.tenant_id, '{"incidentId": 8, "incidentName": "\\ud83d"}')
    resp = http.patch(
        f"{consented.base_url}/api/incidents/8",
        json={"status": "Resolved", "comment": "done"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200, resp.text
    assert b'"incidentName":"\\ud83d"' in resp.content
    body = resp.json()
    assert body["status"] == "Resolved"
    assert body["comments"][0]["comment"] == "done"


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '"text"', b"\xff\xfe{}"])
def test_a_body_that_is_not_one_json_object_is_400(devcloud, consented, payload):
    with pytest.raises(DevCloudError) as err:
        devcloud.put_raw_incident(consented.tenant_id, payload)
    assert err.value.status == 400


def test_filters_skip_odd_values_of_raw_payloads(devcloud, consented, http):
    devcloud.set_consent(
        consented.tenant_id,
        consented.client_id,
        roles=["Incident.Read.All", "SecurityIncident.Read.All"],
    )
    odd = '{"incidentId": 3, "status": ["Active"], "determination": {}, "assignedTo": 7}'
    devcloud.put_raw_incident(consented.tenant_id, odd)
    for scope, path, query in (
        ("https://api.security.microsoft.com/.default", "/api/incidents", "status eq 'Active'"),
        (
            "https://graph.microsoft.com/.default",
            "/v1.0/security/incidents",
            "status eq 'active' and determination eq 'unknown'",
        ),
    ):
        token = consented.token(http, scope=scope)
        resp = http.get(
            f"{consented.base_url}{path}",
            params={"$filter": query},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, resp.text
        assert odd.encode() not in resp.content
