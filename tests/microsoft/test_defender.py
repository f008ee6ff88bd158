"""The Defender API: parsing Microsoft's own examples (defender.py), and the client's paging,
token retry, call budget, allowed host and error classification (client.py).

`responses` only: these are parsing and classification tests. The behaviour against a real
server is in tests/incidents (devcloud over TLS).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from partner_portal.microsoft import defender, errors
from partner_portal.microsoft.client import DefenderClient
from partner_portal.microsoft.http import new_session

# Microsoft's published examples (see the README there for sources).
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"
BASE = "https://api.security.example"


def load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def session() -> requests.Session:
    return new_session(timeout=5)


@pytest.fixture(autouse=True)
def _local_cache(settings):
    # The call budget lives in the cache: a fresh local one per test.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


class Tokens:
    """A token source that hands out a new token after each renewal."""

    def __init__(self) -> None:
        self.issued = 0
        self.rejected = 0

    def get(self) -> str:
        self.issued += 1
        return f"token-{self.rejected}"

    def renew(self) -> None:
        self.rejected += 1

    def check(self, token: str, *, required_roles: list[str]) -> dict:
        raise AssertionError("not used here")


def client(token=None) -> DefenderClient:
    return DefenderClient(
        str(uuid.uuid4()), token=token or Tokens(), base_url=BASE, session=session()
    )


def list_page(items: list[dict], next_link: str | None = None) -> dict:
    body = {"@odata.context": f"{BASE}/api/$metadata#Incidents", "value": items}
    if next_link:
        body["@odata.nextLink"] = next_link
    return body


def incident(n: int, updated: str = "2026-01-01T00:00:00Z") -> dict:
    return {"incidentId": n, "incidentName": f"i{n}", "lastUpdateTime": updated}


def test_the_documented_list_example_parses_field_by_field():
    incidents, next_link = defender.parse_list(load("defender-list-incidents.example.json"))
    assert next_link is None
    assert [i.incident_id for i in incidents] == [924565, 924521, 924518]
    first = incidents[0]
    assert first.name == "Ransomware activity"
    assert first.created_time == datetime(2020, 9, 6, 14, 46, 57, 73333, tzinfo=UTC)
    assert first.last_update_time == datetime(2020, 9, 6, 14, 46, 57, 290000, tzinfo=UTC)
    assert (first.severity, first.status, first.classification) == ("Medium", "Active", "Unknown")
    assert first.determination == "NotAvailable"
    assert first.assigned_to == ""
    assert first.redirect_incident_id is None
    assert first.comments[0]["createdBy"] == "secop123@contoso.com"
    assert "alerts" not in first.raw
    alert = first.alerts[0]
    assert alert.alert_id == "caD70CFEE2-1F54-32DB-9988-3A868A1EBFAC"
    assert (alert.service_source, alert.detection_source) == ("MicrosoftCloudAppSecurity", "MCAS")
    assert alert.category == "Impact"
    assert alert.first_activity == datetime(2020, 9, 4, 5, 22, 59, tzinfo=UTC)
    assert [e["entityType"] for e in alert.entities] == ["User", "Ip"]
    devices = [d for i in incidents for a in i.alerts for d in a.devices]
    assert devices and all("deviceDnsName" in d for d in devices)


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in FIXTURES.glob("*.json") if p.name.startswith(("defender-", "graph-"))),
)
def test_every_defender_and_graph_example_parses_without_crashing(name):
    body = load(name)
    if "value" in body:
        incidents, _ = defender.parse_list(body)
        assert incidents
        for item in incidents:
            assert item.incident_id > 0
            assert item.last_update_time.tzinfo is not None
    elif name.endswith(".request.json"):
        # A PATCH body: only updatable fields, which update_incident accepts.
        assert set(body) <= set(defender.UPDATABLE) | {"customTags", "@odata.type"}
    else:
        item = defender.parse_incident(
            {"incidentId": 1, "lastUpdateTime": "2026-01-01T00:00:00Z", **body}
        )
        assert item.incident_id > 0


def test_graph_field_names_map_to_the_same_fields():
    body = load("graph-list-incidents-expand-alerts.example.json")
    incidents, _ = defender.parse_list(body)
    first = incidents[0]
    assert first.incident_id == 29
    assert first.name.startswith("Multi-stage incident")
    assert first.incident_uri.startswith("https://security.microsoft.com/incident2/29/")
    assert first.tags == ["Demo"]
    assert first.severity == "High"  # Graph's camelCase, in the one vocabulary
    assert first.raw["severity"] == "high"  # as received
    assert first.alerts[0].alert_id == "da09e47ccc-b74a-45bb-985f-8d6c077b70b6_1"
    assert first.alerts[0].entities  # Graph's evidence list


def test_missing_extra_and_null_fields_are_tolerated():
    item = defender.parse_incident(
        {
            "incidentId": "7",
            "lastUpdateTime": "2026-02-03T04:05:06.1234567Z",
            "severity": "SomethingNew",
            "tags": None,
            "alerts": [{"alertId": "a1", "devices": None, "brandNewField": {"x": 1}}],
            "futureField": [1, 2],
        }
    )
    assert item.incident_id == 7
    assert item.severity == "SomethingNew"
    assert item.tags == []
    assert item.created_time == item.last_update_time
    assert item.last_update_time.microsecond == 123456  # the 7th digit is dropped
    assert item.alerts[0].devices == []
    assert item.raw["futureField"] == [1, 2]


def test_an_incident_without_id_or_update_time_is_a_bad_response():
    with pytest.raises(errors.BadResponse):
        defender.parse_incident({"incidentName": "no id", "lastUpdateTime": "2026-01-01T00:00Z"})
    with pytest.raises(errors.BadResponse):
        defender.parse_incident({"incidentId": 1})


@responses.activate
def test_pages_follow_next_link_and_send_an_unquoted_filter():
    second = f"{BASE}/api/incidents?$top=100&$skiptoken=abc"
    responses.get(f"{BASE}/api/incidents", json=list_page([incident(2)], next_link=second))
    responses.get(second, json=list_page([incident(1)]))
    since = datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)
    pages = list(client().incident_pages(since=since))
    assert [[i.incident_id for i in p.incidents] for p in pages] == [[2], [1]]
    assert [p.number for p in pages] == [1, 2]
    assert pages[-1].is_last
    first_url = responses.calls[0].request.url
    query = parse_qs(urlsplit(first_url).query)
    assert query["$filter"] == ["lastUpdateTime ge 2026-01-02T03:04:05.678900Z"]
    assert query["$top"] == ["100"]
    assert "'" not in first_url
    assert responses.calls[0].request.headers["Authorization"] == "Bearer token-0"
    assert responses.calls[1].request.url == second


@responses.activate
def test_without_next_link_pages_skip_until_a_short_page():
    def reply(request):
        skip = int(parse_qs(urlsplit(request.url).query).get("$skip", ["0"])[0])
        items = [incident(n) for n in range(skip, min(skip + 100, 250))]
        return 200, {}, json.dumps(list_page(items))

    responses.add_callback(responses.GET, f"{BASE}/api/incidents", callback=reply)
    pages = list(client().incident_pages())
    assert [len(p.incidents) for p in pages] == [100, 100, 50]
    skips = [parse_qs(urlsplit(c.request.url).query).get("$skip") for c in responses.calls]
    assert skips == [None, ["100"], ["200"]]
    assert "$filter" not in responses.calls[0].request.url


@responses.activate
def test_an_exactly_full_last_page_costs_one_empty_page():
    def reply(request):
        skip = int(parse_qs(urlsplit(request.url).query).get("$skip", ["0"])[0])
        return (
            200,
            {},
            json.dumps(list_page([incident(n) for n in range(skip, min(skip + 100, 100))])),
        )

    responses.add_callback(responses.GET, f"{BASE}/api/incidents", callback=reply)
    pages = list(client().incident_pages())
    assert [len(p.incidents) for p in pages] == [100, 0]


@responses.activate
def test_paging_resumes_from_a_cursor():
    responses.get(f"{BASE}/api/incidents", json=list_page([incident(5)]))
    pages = list(client().incident_pages(start_skip=300, first_page_number=4))
    assert pages[0].number == 4
    assert (
        "%24skip=300" in responses.calls[0].request.url
        or "$skip=300" in responses.calls[0].request.url
    )


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "7"}, {"error": {"code": "TooManyRequests", "message": "x"}}, 7),
        (
            {},
            {
                "error": {
                    "code": "429",
                    "message": "API calls quota exceeded! Maximum allowed 30 per 00:01:00 for "
                    "the key Destination+TenantID+AppID. You can send requests again in 8 seconds.",
                }
            },
            8,
        ),
        ({}, {"error": {"code": "TooManyRequests", "message": "slow down"}}, 60),
    ],
)
@responses.activate
def test_429_is_throttled_with_the_wait_microsoft_asks(headers, body, expected):
    responses.get(f"{BASE}/api/incidents", json=body, status=429, headers=headers)
    with pytest.raises(errors.Throttled) as info:
        next(client().incident_pages())
    assert info.value.retry_after == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": {"code": "InternalServerError", "message": "boom"}}, errors.Transient),
        (503, "Service Unavailable", errors.Transient),
        (
            401,
            {"error": {"code": "Unauthorized", "message": "Invalid Authorization payload."}},
            errors.Forbidden,
        ),
        (
            403,
            {
                "error": {
                    "code": "Forbidden",
                    "message": "The application does not have any of the required application "
                    "permissions (Incident.ReadWrite.All, Incident.Read.All)",
                }
            },
            errors.MissingPermissions,
        ),
        (
            403,
            {"error": {"code": "DisabledFeature", "message": "Tenant feature is not enabled"}},
            errors.Forbidden,
        ),
        (
            400,
            {"error": {"code": "ODataError", "message": "Invalid OData URI query"}},
            errors.BadResponse,
        ),
    ],
)
@responses.activate
def test_error_answers_are_classified(status, body, expected):
    if isinstance(body, dict):
        responses.get(f"{BASE}/api/incidents", json=body, status=status)
    else:
        responses.get(f"{BASE}/api/incidents", body=body, status=status)
    with pytest.raises(errors.MicrosoftError) as info:
        next(client().incident_pages())
    assert type(info.value) is expected
    assert info.value.status == status


UNAUTHORIZED = {"error": {"code": "Unauthorized", "message": "Invalid Authorization payload."}}


@responses.activate
def test_a_401_is_sent_once_more_with_a_new_token():
    second = f"{BASE}/api/incidents?$top=100&$skiptoken=abc"
    responses.get(f"{BASE}/api/incidents", json=list_page([incident(2)], next_link=second))
    responses.get(second, json=UNAUTHORIZED, status=401)
    responses.get(second, json=list_page([incident(1)]))
    provider = Tokens()
    api = client(provider)
    pages = list(api.incident_pages())
    # The listing carries on where it was: the refused page is asked again, not page 1.
    assert [[i.incident_id for i in p.incidents] for p in pages] == [[2], [1]]
    assert [c.request.url for c in responses.calls][1:] == [second, second]
    sent = [c.request.headers["Authorization"] for c in responses.calls]
    assert sent == ["Bearer token-0", "Bearer token-0", "Bearer token-1"]
    assert provider.rejected == 1
    assert api.api_calls == 3  # the retry is a call like any other


@responses.activate
def test_a_second_401_in_a_row_is_forbidden():
    responses.get(f"{BASE}/api/incidents/1", json=UNAUTHORIZED, status=401)
    provider = Tokens()
    with pytest.raises(errors.Forbidden) as info:
        client(provider).get_incident(1)
    assert info.value.status == 401
    assert (len(responses.calls), provider.rejected) == (2, 1)
    sent = [c.request.headers["Authorization"] for c in responses.calls]
    assert sent == ["Bearer token-0", "Bearer token-1"]


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "Forbidden", "message": "Missing role Incident.Read.All"}},
        {"error": {"code": "Forbidden", "message": "Tenant feature is not enabled"}},
    ],
)
@responses.activate
def test_a_403_is_permanent_at_once_without_a_new_token(body):
    responses.get(f"{BASE}/api/incidents", json=body, status=403)
    provider = Tokens()
    with pytest.raises((errors.Forbidden, errors.MissingPermissions)):
        next(client(provider).incident_pages())
    assert (len(responses.calls), provider.rejected) == (1, 0)


@responses.activate
def test_a_refused_patch_is_sent_again_with_a_new_token():
    url = f"{BASE}/api/incidents/7"
    responses.patch(url, json=UNAUTHORIZED, status=401)
    responses.patch(url, json={**incident(7), "status": "Resolved"})
    provider = Tokens()
    updated = client(provider).update_incident(7, status="Resolved")
    assert updated is not None and updated.status == "Resolved"
    assert [json.loads(c.request.body) for c in responses.calls] == [{"status": "Resolved"}] * 2
    assert responses.calls[1].request.headers["Authorization"] == "Bearer token-1"


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectTimeout("slow"),
        requests.ReadTimeout("slow"),
        requests.ConnectionError("reset"),
        requests.exceptions.ChunkedEncodingError("cut"),
    ],
)
@responses.activate
def test_network_failures_are_transient(failure):
    responses.get(f"{BASE}/api/incidents", body=failure)
    with pytest.raises(errors.Transient) as info:
        next(client().incident_pages())
    assert type(info.value) is errors.Transient


@pytest.mark.parametrize("text", ['{"value": [{"incidentId": 1, "lastUp', "<html>oops</html>"])
@responses.activate
def test_truncated_or_malformed_json_is_transient(text):
    responses.get(f"{BASE}/api/incidents", body=text, content_type="application/json")
    with pytest.raises(errors.Transient):
        next(client().incident_pages())


@responses.activate
def test_token_errors_pass_through_unchanged():
    class Refused(Tokens):
        def get(self) -> str:
            raise errors.ConsentRequired("AADSTS700016: no such app", code="700016")

    with pytest.raises(errors.ConsentRequired):
        next(client(Refused()).incident_pages())
    assert len(responses.calls) == 0


@responses.activate
def test_the_call_budget_refuses_before_any_request(settings):
    settings.DEFENDER_CALLS_PER_MINUTE = 0
    with pytest.raises(errors.Throttled) as info:
        next(client().incident_pages())
    assert info.value.code == "budget"
    assert len(responses.calls) == 0


@responses.activate
def test_a_next_link_to_another_host_is_refused_before_the_token_is_sent():
    elsewhere = "https://collector.example/api/incidents?$skiptoken=abc"
    responses.get(f"{BASE}/api/incidents", json=list_page([incident(2)], next_link=elsewhere))
    pages = client().incident_pages()
    assert [i.incident_id for i in next(pages).incidents] == [2]
    with pytest.raises(errors.BadResponse):
        next(pages)
    assert len(responses.calls) == 1


@responses.activate
def test_get_incident_returns_none_on_404():
    responses.get(f"{BASE}/api/incidents/5", status=404, json={"error": {"code": "NotFound"}})
    sample = load("defender-list-incidents.example.json")["value"][1]
    responses.get(f"{BASE}/api/incidents/924521", json=sample)
    api = client()
    assert api.get_incident(5) is None
    assert api.get_incident(924521).incident_id == 924521


@responses.activate
def test_update_incident_patches_and_parses_microsofts_partial_answer():
    request_body = load("defender-update-incident.request.json")
    responses.patch(
        f"{BASE}/api/incidents/924565", json=load("defender-update-incident.response.json")
    )
    result = client().update_incident(924565, **request_body)
    assert json.loads(responses.calls[0].request.body) == request_body
    assert result.incident_id == 924565
    assert (result.status, result.determination) == ("Resolved", "Malware")
    assert len(result.comments) == 2


def test_update_incident_refuses_fields_microsoft_does_not_update():
    with pytest.raises(ValueError, match="severity"):
        client().update_incident(1, severity="High")
