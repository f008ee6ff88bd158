"""Fault injection: each kind does what it says, scoped by endpoint, tenant, count, after."""

from __future__ import annotations

import time

import pytest
import requests

from devcloud.timefmt import parse_ticks

pytestmark = pytest.mark.integration


@pytest.fixture
def api(devcloud, consented, http):
    devcloud.generate_incidents(consented.tenant_id, 30, seed=3)
    headers = {"Authorization": f"Bearer {consented.token(http)}"}
    url = f"{consented.base_url}/api/incidents"

    def call(**kw):
        return http.get(url, headers=headers, **kw)

    return call


def test_status_faults_answer_the_status_count_times(devcloud, consented, api):
    devcloud.add_fault(endpoint="list_incidents", kind="status", status=503, count=2)
    statuses = [api().status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    log = devcloud.requests_log()
    assert log["by_status"]["503"] == 2


def test_a_429_fault_carries_retry_after_and_the_defender_body(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="status", status=429, retry_after=7)
    resp = api()
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "7"
    assert resp.json()["error"]["code"] == "TooManyRequests"


def test_a_token_fault_has_the_entra_error_shape(devcloud, consented, http):
    devcloud.add_fault(endpoint="token", kind="status", status=500, count=1)
    resp = consented.token_response(http)
    assert resp.status_code == 500
    assert resp.json()["error"] == "server_error"
    assert consented.token_response(http).status_code == 200


def test_after_skips_the_first_matching_requests(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="status", status=500, after=2, count=1)
    assert [api().status_code for _ in range(4)] == [200, 200, 500, 200]


def test_rate_applies_to_a_fraction_of_requests(devcloud, api):
    devcloud.add_fault(endpoint="*", kind="status", status=503, rate=0.5)
    statuses = [api().status_code for _ in range(40)]
    assert 5 < statuses.count(503) < 35
    assert set(statuses) == {200, 503}


def test_faults_are_scoped_to_their_tenant(devcloud, consented, api, http):
    other = devcloud.create_tenant()
    devcloud.add_fault(endpoint="*", tenant=other["tenant_id"], kind="status", status=503)
    assert api().status_code == 200
    discovery = http.get(
        f"{consented.base_url}/{other['tenant_id']}/v2.0/.well-known/openid-configuration"
    )
    assert discovery.status_code == 503


def test_latency_delays_the_answer(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="latency", latency_ms=400, count=1)
    started = time.monotonic()
    assert api().status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    api()
    assert time.monotonic() - started < 0.4


def test_reset_drops_the_connection(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="reset", count=1)
    with pytest.raises(requests.ConnectionError):
        api()
    assert api().status_code == 200
    assert devcloud.requests_log()["by_status"]["0"] == 1


def test_hang_makes_the_client_time_out(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="hang", hang_s=3, count=1)
    with pytest.raises(requests.ReadTimeout):
        api(timeout=0.5)
    assert api(timeout=5).status_code == 200


def test_truncate_cuts_the_body_short(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="truncate", count=1)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        api().content  # noqa: B018 - reading the body is what fails
    assert api().status_code == 200


def test_malformed_is_a_200_that_is_not_json(devcloud, api):
    devcloud.add_fault(endpoint="list_incidents", kind="malformed", count=1)
    resp = api()
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert api().json()["value"]


def test_evolve_changes_incidents_before_answering(devcloud, consented, api):
    before = {i["incidentId"]: i["lastUpdateTime"] for i in devcloud.incidents(consented.tenant_id)}
    devcloud.add_fault(endpoint="list_incidents", kind="evolve", changed=3, count=1)
    body = api(params={"$top": 3}).json()
    after = {i["incidentId"]: i["lastUpdateTime"] for i in devcloud.incidents(consented.tenant_id)}
    changed = [k for k in before if before[k] != after[k]]
    assert len(changed) == 3
    # The page served after the change already shows the changed incidents on top.
    assert sorted(i["incidentId"] for i in body["value"]) == sorted(changed)
    for incident in body["value"]:
        assert parse_ticks(incident["lastUpdateTime"]) > parse_ticks(before[incident["incidentId"]])


def test_clear_faults_removes_them(devcloud, api):
    devcloud.add_fault(endpoint="*", kind="status", status=503)
    assert api().status_code == 503
    devcloud.clear_faults()
    assert api().status_code == 200


def test_bad_fault_requests_are_refused(devcloud):
    from devcloud.client import DevCloudError

    with pytest.raises(DevCloudError) as exc:
        devcloud.add_fault(endpoint="list_incidents", kind="explode")
    assert exc.value.status == 400
