"""devcloud's answers have the shape of Microsoft's published examples, key for key: the same
keys (plus the few real responses add), nulls where the example has nulls, and date-times
written at the precision the example shows for that field."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,7}))?Z$")
# Keys real Defender responses carry that the doc example leaves out (protocol notes §6.4, §6.5).
EXTRA = {"incident": ["incidentUri"], "alert": ["providerAlertId", "detectorId"]}


def _objects(incidents: list[dict]) -> dict[str, list[dict]]:
    """Every object of a Defender answer, by kind; entities also by `entity:<type>`."""
    kinds: dict[str, list[dict]] = defaultdict(list)
    for incident in incidents:
        kinds["incident"].append(incident)
        kinds["comment"] += incident["comments"]
        for alert in incident["alerts"]:
            kinds["alert"].append(alert)
            kinds["device"] += alert["devices"]
            kinds["entity"] += alert["entities"]
            for entity in alert["entities"]:
                kinds[f"entity:{entity['entityType']}"].append(entity)
    return kinds


def _digits(value: str) -> int:
    fraction = DATETIME.match(value).group(1)
    return len(fraction) if fraction else 0


def _formats(objects: list[dict]) -> dict[str, set[int]]:
    """Fraction digits seen per date-time key."""
    seen: dict[str, set[int]] = defaultdict(set)
    for obj in objects:
        for key, value in obj.items():
            if isinstance(value, str) and DATETIME.match(value):
                seen[key].add(_digits(value))
    return seen


@pytest.fixture
def answer(devcloud, consented, http) -> list[dict]:
    """Defender's list answer for 250 generated incidents, some evolved (comments, merges)."""
    devcloud.generate_incidents(consented.tenant_id, 250, seed=5)
    devcloud.evolve(consented.tenant_id, changed=60, new=3, seed=6)
    headers = {"Authorization": f"Bearer {consented.token(http)}"}
    items, url = [], f"{consented.base_url}/api/incidents"
    while url:
        body = http.get(url, headers=headers).json()
        items += body["value"]
        url = body.get("@odata.nextLink")
    assert len(items) == 253
    return items


@pytest.fixture(scope="module")
def example() -> dict[str, list[dict]]:
    body = json.loads((FIXTURES / "defender-list-incidents.example.json").read_text())
    return _objects(body["value"])


@pytest.mark.parametrize("kind", ["incident", "alert", "device", "entity", "comment"])
def test_every_object_has_the_examples_keys_in_its_order(answer, example, kind):
    want = list(example[kind][0])
    assert all(list(obj) == want for obj in example[kind])  # the example agrees with itself
    extra = EXTRA.get(kind, [])
    got = _objects(answer)[kind]
    assert got
    for obj in got:
        assert [k for k in obj if k not in extra] == want
        assert set(obj) - set(want) == set(extra)
    if kind == "entity":
        assert len(want) == 31


def test_nulls_are_where_the_example_has_them(answer, example):
    got = _objects(answer)
    compared = [k for k in example if k in got]
    assert {"incident", "alert", "device", "entity:User", "entity:File", "entity:MailBox"} <= set(
        compared
    )
    for kind in compared:
        for key in example[kind][0]:
            ex_nulls = {obj[key] is None for obj in example[kind]}
            our_nulls = {obj[key] is None for obj in got[kind]}
            if ex_nulls == {False}:  # never null in the example: never null here
                assert our_nulls == {False}, (kind, key)
            else:  # null in the example: null here too, at least sometimes
                assert True in our_nulls, (kind, key)
            ex_types = {type(obj[key]) for obj in example[kind] if obj[key] is not None}
            our_types = {type(obj[key]) for obj in got[kind] if obj[key] is not None}
            if ex_types:
                assert our_types <= ex_types, (kind, key, our_types)


def test_explicit_nulls_are_sent_not_left_out(answer):
    incident = answer[0]
    assert "assignedTo" in incident
    assert "redirectIncidentId" in incident
    assert any(i["redirectIncidentId"] is None for i in answer)
    assert any(i["redirectIncidentId"] is not None for i in answer)
    assert all("actorName" in a for i in answer for a in i["alerts"])


def test_date_times_have_the_examples_precision_per_field(answer, example):
    got = _objects(answer)
    for kind in ("incident", "alert", "device", "comment"):
        ours, theirs = _formats(got[kind]), _formats(example[kind])
        for key, digits in theirs.items():
            assert ours[key] == digits, (kind, key, ours[key], digits)
        for key in set(ours) - set(theirs):  # null in the example (resolvedTime): still ISO
            assert ours[key] <= set(range(8)), (kind, key)
    assert _formats(example["incident"])["lastUpdateTime"] == {2}
    entity_times = _formats(got["entity"])
    assert entity_times["processCreationTime"] == {7}


def test_precision_helpers_print_the_examples_digit_counts():
    from devcloud.timefmt import centiseconds_up, format_ticks, full_ticks, sql_datetime

    base = 16_000_000_000_000_000
    for ticks in range(base, base + 30_000_000, 99_991):
        assert _digits(format_ticks(full_ticks(ticks))) == 7
        assert _digits(format_ticks(sql_datetime(ticks, seven_digits=True))) == 7
        assert _digits(format_ticks(sql_datetime(ticks))) in (2, 7)
        up = centiseconds_up(ticks)
        assert up >= ticks
        assert _digits(format_ticks(up)) == 2


def _graph_objects(incidents: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = defaultdict(list)
    for incident in incidents:
        kinds["incident"].append(incident)
        for alert in incident.get("alerts", []):
            kinds["alert"].append(alert)
            for evidence in alert["evidence"]:
                kinds[evidence["@odata.type"]].append(evidence)
    return kinds


def test_graph_objects_have_the_graph_examples_keys(devcloud, consented, http):
    devcloud.set_consent(
        consented.tenant_id, consented.client_id, roles=["SecurityIncident.Read.All"]
    )
    devcloud.generate_incidents(consented.tenant_id, 60, seed=8)
    token = consented.token(http, scope="https://graph.microsoft.com/.default")
    body = http.get(
        f"{consented.base_url}/v1.0/security/incidents",
        params={"$expand": "alerts", "$top": 50},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    ours = _graph_objects(body["value"])
    example = json.loads((FIXTURES / "graph-list-incidents-expand-alerts.example.json").read_text())
    theirs = _graph_objects(example["value"])
    plain = json.loads((FIXTURES / "graph-list-incidents.example.json").read_text())["value"]
    assert set(plain[0]) == set(theirs["incident"][0]) - {"alerts"}
    for kind, objects in theirs.items():
        want = set(objects[0])
        assert ours[kind], kind
        for obj in ours[kind]:
            assert set(obj) == want, (kind, set(obj) ^ want)
