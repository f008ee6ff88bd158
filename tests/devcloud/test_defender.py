"""devcloud's Defender incidents API: OData filtering and paging against the ground truth,
Bearer checks, PATCH, rate limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from devcloud.client import DevCloudError
from devcloud.timefmt import parse_ticks

pytestmark = pytest.mark.integration

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "fixtures"
    / "microsoft"
    / "defender-list-incidents.example.json"
)


@pytest.fixture
def api(devcloud, consented, http):
    """(GET/PATCH helper, setup) for a consented tenant with 150 incidents."""
    devcloud.generate_incidents(consented.tenant_id, 150, seed=7)
    token = consented.token(http)

    class Api:
        base = consented.base_url
        headers = {"Authorization": f"Bearer {token}"}

        def get(self, path="/api/incidents", **params):
            return http.get(f"{self.base}{path}", params=params or None, headers=self.headers)

        def all(self, **params) -> list[dict]:
            items, resp = [], self.get(**params)
            while True:
                assert resp.status_code == 200, resp.text
                body = resp.json()
                items += body["value"]
                if "@odata.nextLink" not in body:
                    return items
                resp = http.get(body["@odata.nextLink"], headers=self.headers)

    return Api()


def test_paging_with_next_link_returns_the_ground_truth_newest_first(devcloud, consented, api):
    truth = devcloud.incidents(consented.tenant_id)
    assert len(truth) == 150
    first = api.get(**{"$top": 100})
    body = first.json()
    assert body["@odata.context"] == f"{consented.base_url}/api/$metadata#Incidents"
    assert len(body["value"]) == 100
    assert body["@odata.nextLink"].startswith(f"{consented.base_url}/api/incidents?")
    assert api.all(**{"$top": 100}) == truth
    keys = [(parse_ticks(i["lastUpdateTime"]), i["incidentId"]) for i in truth]
    assert keys == sorted(keys, reverse=True)


def test_skip_pages_without_next_link_agree_too(devcloud, consented, api):
    truth = devcloud.incidents(consented.tenant_id)
    pages = [api.get(**{"$top": 40, "$skip": s}).json()["value"] for s in range(0, 160, 40)]
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    assert sum(pages, []) == truth


def test_response_headers_are_odata(api):
    resp = api.get(**{"$top": 1})
    assert resp.headers["Content-Type"] == (
        "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
    )
    assert resp.headers["OData-Version"] == "4.0"


def test_filter_on_last_update_time_with_seven_fractional_digits(devcloud, consented, api):
    truth = devcloud.incidents(consented.tenant_id)
    pivot = truth[60]["lastUpdateTime"]
    ticks = parse_ticks(pivot)
    literal = f"{pivot[:19]}.{ticks % 10**7:07d}Z"  # all 7 digits, e.g. `.2900000`
    for op, keep in (
        ("ge", lambda t: t >= ticks),
        ("gt", lambda t: t > ticks),
        ("lt", lambda t: t < ticks),
        ("le", lambda t: t <= ticks),
    ):
        got = api.all(**{"$filter": f"lastUpdateTime {op} {literal}"})
        assert got == [i for i in truth if keep(parse_ticks(i["lastUpdateTime"]))], op
    # Millisecond precision works too; a date-time without an offset is not a DateTimeOffset.
    short = f"{literal[:23]}Z"
    got = api.all(**{"$filter": f"lastUpdateTime ge {short}"})
    assert got == [i for i in truth if parse_ticks(i["lastUpdateTime"]) >= parse_ticks(short)]
    assert api.get(**{"$filter": f"lastUpdateTime ge {literal[:-1]}"}).status_code == 400


def test_filters_combine_with_and(devcloud, consented, api):
    truth = devcloud.incidents(consented.tenant_id)
    since = truth[100]["createdTime"]
    since_ticks = parse_ticks(since)
    assignee = next(i["assignedTo"] for i in truth if i.get("assignedTo"))
    query = f"createdTime ge {since} and status eq 'InProgress' and assignedTo eq '{assignee}'"
    got = api.all(**{"$filter": query})
    expected = [
        i
        for i in truth
        if parse_ticks(i["createdTime"]) >= since_ticks
        and i["status"] == "InProgress"
        and i.get("assignedTo") == assignee
    ]
    assert got == expected
    active = api.all(**{"$filter": "status eq 'Active'"})
    assert active == [i for i in truth if i["status"] == "Active"] and active


@pytest.mark.parametrize(
    "bad",
    [
        "severity eq 'High'",
        "lastUpdateTime ge '2026-01-01T00:00:00Z'",
        "lastUpdateTime ge 2026-13-01",
        "status eq 'Active' or status eq 'Resolved'",
        "status eq 'Sleeping'",
        "incidentId gt 5",
        "status eq Active",
    ],
)
def test_unsupported_filters_are_400_odata_error(api, bad):
    resp = api.get(**{"$filter": bad})
    assert resp.status_code == 400, bad
    error = resp.json()["error"]
    assert error["code"] == "ODataError"
    assert set(error) == {"code", "message", "target"}


def test_top_above_100_is_400(api):
    resp = api.get(**{"$top": 101})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "ODataError"
    assert api.get(**{"$top": 100}).status_code == 200


def test_an_incident_looks_like_microsofts_example(devcloud, consented, api):
    example = json.loads(FIXTURE.read_text())["value"]
    known_incident = set().union(*(i.keys() for i in example)) | {"incidentUri"}
    known_alert = set().union(*(a.keys() for i in example for a in i["alerts"]))
    known_alert |= {"providerAlertId", "detectorId"}
    known_entity = set().union(
        *(e.keys() for i in example for a in i["alerts"] for e in a["entities"])
    )
    known_device = set().union(
        *(d.keys() for i in example for a in i["alerts"] for d in a["devices"])
    )
    truth = devcloud.incidents(consented.tenant_id)
    entity_types = set()
    for incident in truth:
        assert set(incident) <= known_incident
        assert isinstance(incident["incidentId"], int)
        assert incident["incidentUri"] == (
            f"https://security.microsoft.com/incidents/{incident['incidentId']}"
            f"?tid={consented.tenant_id}"
        )
        assert incident["severity"] in ("Informational", "Low", "Medium", "High")
        assert incident["status"] in ("Active", "InProgress", "Resolved", "Redirected")
        for alert in incident["alerts"]:
            assert set(alert) <= known_alert
            assert alert["incidentId"] == incident["incidentId"]
            for entity in alert["entities"]:
                assert set(entity) <= known_entity
                entity_types.add(entity["entityType"])
            for device in alert["devices"]:
                assert set(device) <= known_device
    assert {"User", "Ip", "File", "Process", "MailBox", "MailMessage", "Url"} <= entity_types
    sources = {a["serviceSource"] for i in truth for a in i["alerts"]}
    assert len(sources) >= 4


def test_get_one_incident_and_404(devcloud, consented, api):
    truth = devcloud.incidents(consented.tenant_id)
    resp = api.get(f"/api/incidents/{truth[3]['incidentId']}")
    assert resp.status_code == 200
    body = resp.json()
    assert body.pop("@odata.context") == (f"{consented.base_url}/api/$metadata#Incidents/$entity")
    assert body == truth[3]
    missing = api.get("/api/incidents/1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NotFound"


def test_patch_needs_incident_readwrite_all(devcloud, consented, api, http):
    incident_id = devcloud.incidents(consented.tenant_id)[0]["incidentId"]
    url = f"{consented.base_url}/api/incidents/{incident_id}"
    resp = http.patch(url, json={"status": "Resolved"}, headers=api.headers)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "Forbidden"


def test_patch_updates_fields_appends_the_comment_and_bumps_last_update_time(
    devcloud, consented, http
):
    devcloud.generate_incidents(consented.tenant_id, 5, seed=1)
    devcloud.set_consent(consented.tenant_id, consented.client_id, roles=["Incident.ReadWrite.All"])
    token = consented.token(http)
    before = devcloud.incidents(consented.tenant_id)[-1]
    url = f"{consented.base_url}/api/incidents/{before['incidentId']}"
    change = {
        "status": "Resolved",
        "assignedTo": "secop2@contoso.com",
        "classification": "TruePositive",
        "determination": "Malware",
        "tags": ["Yossi's playground"],
        "comment": "pen testing",
    }
    resp = http.patch(url, json=change, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["@odata.context"].endswith("/api/$metadata#Incidents/$entity")
    for key in ("status", "assignedTo", "classification", "determination", "tags"):
        assert after[key] == change[key]
    assert after["comments"][-1]["comment"] == "pen testing"
    assert len(after["comments"]) == len(before["comments"]) + 1
    assert parse_ticks(after["lastUpdateTime"]) > parse_ticks(before["lastUpdateTime"])
    assert devcloud.incidents(consented.tenant_id)[0]["incidentId"] == before["incidentId"]
    bad = http.patch(url, json={"status": "Sleeping"}, headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400
    missing = http.patch(
        f"{consented.base_url}/api/incidents/1",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert missing.status_code == 404


def test_a_merged_incident_points_to_its_target_and_answers_404_to_a_patch(
    devcloud, consented, http
):
    """Microsoft merges incidents: the merged one stays readable, `Redirected` with
    `redirectIncidentId`; its alerts move to the target; writing to it is 404 (the client
    follows the pointer)."""
    devcloud.generate_incidents(consented.tenant_id, 6, seed=3)
    devcloud.set_consent(consented.tenant_id, consented.client_id, roles=["Incident.ReadWrite.All"])
    headers = {"Authorization": f"Bearer {consented.token(http)}"}
    live = [i for i in devcloud.incidents(consented.tenant_id) if not i["redirectIncidentId"]]
    source, target = live[0], live[1]
    merged = devcloud.merge_incident(
        consented.tenant_id, source["incidentId"], target["incidentId"]
    )
    assert merged["incident"]["status"] == "Redirected"
    assert merged["incident"]["redirectIncidentId"] == target["incidentId"]
    assert merged["incident"]["alerts"] == []
    moved = {a["alertId"] for a in source["alerts"]}
    assert moved <= {a["alertId"] for a in merged["into"]["alerts"]}
    for side, was in ((merged["incident"], source), (merged["into"], target)):
        assert parse_ticks(side["lastUpdateTime"]) > parse_ticks(was["lastUpdateTime"])

    url = f"{consented.base_url}/api/incidents/{source['incidentId']}"
    got = http.get(url, headers=headers)
    assert got.status_code == 200
    assert got.json()["redirectIncidentId"] == target["incidentId"]
    patch = http.patch(url, json={"status": "Resolved"}, headers=headers)
    assert patch.status_code == 404
    assert patch.json()["error"]["code"] == "NotFound"
    assert (
        http.patch(
            f"{consented.base_url}/api/incidents/{target['incidentId']}",
            json={"status": "Resolved"},
            headers=headers,
        ).status_code
        == 200
    )
    # Only into an incident that is not merged itself.
    with pytest.raises(DevCloudError, match="not merged itself"):
        devcloud.merge_incident(consented.tenant_id, target["incidentId"], source["incidentId"])


def test_patch_refuses_a_determination_of_another_classification(devcloud, consented, http):
    devcloud.generate_incidents(consented.tenant_id, 2, seed=1)
    devcloud.set_consent(consented.tenant_id, consented.client_id, roles=["Incident.ReadWrite.All"])
    headers = {"Authorization": f"Bearer {consented.token(http)}"}
    before = devcloud.incidents(consented.tenant_id)[-1]
    url = f"{consented.base_url}/api/incidents/{before['incidentId']}"
    bad = http.patch(
        url, json={"classification": "FalsePositive", "determination": "Malware"}, headers=headers
    )
    assert bad.status_code == 400
    assert "not valid for the classification" in bad.json()["error"]["message"]
    assert devcloud.incidents(consented.tenant_id)[-1] == before
    good = http.patch(
        url,
        json={"classification": "FalsePositive", "determination": "NotMalicious"},
        headers=headers,
    )
    assert good.status_code == 200, good.text
    assert good.json()["determination"] == "NotMalicious"


def _unauthorized(resp) -> None:
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == "Unauthorized"
    assert error["message"] == "Invalid Authorization payload."
    assert len(error["target"]) == 36


def test_bad_tokens_are_401(devcloud, consented, http, api):
    url = f"{consented.base_url}/api/incidents"
    _unauthorized(http.get(url))
    _unauthorized(http.get(url, headers={"Authorization": "Bearer not-a-jwt"}))
    good = api.headers["Authorization"][7:]
    claims = jwt.decode(good, options={"verify_signature": False})
    from tests.devcloud.registration import make_certificate

    other_key, _ = make_certificate()
    header = jwt.get_unverified_header(good)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": header["kid"]})
    _unauthorized(http.get(url, headers={"Authorization": f"Bearer {forged}"}))
    graph = consented.token(http, scope="https://graph.microsoft.com/.default")
    _unauthorized(http.get(url, headers={"Authorization": f"Bearer {graph}"}))


def test_an_expired_token_is_401(devcloud, consented, http):
    devcloud.set_limits(token_lifetime=1)
    token = consented.token(http)
    deadline = time.time() + 5
    while time.time() < deadline:
        resp = http.get(
            f"{consented.base_url}/api/incidents", headers={"Authorization": f"Bearer {token}"}
        )
        if resp.status_code == 401:
            break
        time.sleep(0.2)
    _unauthorized(resp)


def test_the_51st_call_in_a_minute_is_429_with_retry_after(devcloud, consented, api):
    for _ in range(50):
        assert api.get(**{"$top": 1}).status_code == 200
    resp = api.get(**{"$top": 1})
    assert resp.status_code == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    error = resp.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert f"again in {retry_after} seconds" in error["message"]
    log = devcloud.requests_log(tenant=consented.tenant_id)
    assert log["by_status"]["429"] == 1
    assert log["by_endpoint"]["list_incidents"] == 51


def test_throttled_calls_do_not_count_and_limits_are_per_app_and_tenant(devcloud, consented, http):
    devcloud.set_limits(per_minute=3)
    devcloud.generate_incidents(consented.tenant_id, 3)
    token = consented.token(http)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{consented.base_url}/api/incidents"
    statuses = [http.get(url, headers=headers).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    # Another tenant for the same app has its own budget.
    other = devcloud.create_tenant()
    devcloud.set_consent(other["tenant_id"], consented.client_id)
    consented.tenant_id = other["tenant_id"]
    other_headers = {"Authorization": f"Bearer {consented.token(http)}"}
    assert http.get(url, headers=other_headers).status_code == 200


def test_the_hourly_limit_applies_too(devcloud, consented, http):
    devcloud.set_limits(per_minute=100, per_hour=4)
    headers = {"Authorization": f"Bearer {consented.token(http)}"}
    url = f"{consented.base_url}/api/incidents"
    statuses = [http.get(url, headers=headers).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    resp = http.get(url, headers=headers)
    assert "per 01:00:00" in resp.json()["error"]["message"]
    assert int(resp.headers["Retry-After"]) > 60


def test_a_chunked_patch_body_is_read(devcloud, consented, http):
    devcloud.generate_incidents(consented.tenant_id, 2, seed=1)
    devcloud.set_consent(consented.tenant_id, consented.client_id, roles=["Incident.ReadWrite.All"])
    token = consented.token(http)
    incident_id = devcloud.incidents(consented.tenant_id)[0]["incidentId"]
    url = f"{consented.base_url}/api/incidents/{incident_id}"
    body = (part for part in [b'{"assignedTo": ', b'"secop1@contoso.com"}'])
    resp = http.patch(
        url,
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["assignedTo"] == "secop1@contoso.com"
    # The connection is still usable afterwards (keep-alive not desynchronised).
    assert http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
