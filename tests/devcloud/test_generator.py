"""The data generator is deterministic by seed, realistic, and evolves incidents."""

from __future__ import annotations

import pytest

from devcloud.state import Store
from devcloud.timefmt import format_ticks, parse_ticks

TID = "11111111-2222-4333-8444-555555555555"


def names(store: Store) -> list[tuple]:
    truth = store.ground_truth(TID)
    return [(i["incidentId"], i["incidentName"], i["severity"], len(i["alerts"])) for i in truth]


def fresh(seed: int) -> Store:
    store = Store(seed=seed)
    store.create_tenant(tenant_id=TID, domain="contoso.onmicrosoft.com")
    store.generate(TID, 50, seed=seed)
    return store


def test_the_same_seed_gives_the_same_incidents():
    assert names(fresh(5)) == names(fresh(5))
    assert names(fresh(5)) != names(fresh(6))


def test_incidents_are_varied():
    truth = fresh(1).ground_truth(TID)
    assert len({i["severity"] for i in truth}) >= 3
    assert {"Active", "Resolved"} <= {i["status"] for i in truth}
    resolved = [i for i in truth if i["status"] == "Resolved"]
    assert all(i["classification"] != "Unknown" for i in resolved)
    assert any(a["mitreTechniques"] for i in truth for a in i["alerts"])
    assert any(a["devices"] for i in truth for a in i["alerts"])
    assert all(i["alerts"] for i in truth)


def test_evolve_changes_existing_incidents_and_adds_new_ones():
    store = fresh(2)
    before = {i["incidentId"]: i for i in store.ground_truth(TID)}
    result = store.evolve(TID, changed=5, new=2)
    after = {i["incidentId"]: i for i in store.ground_truth(TID)}
    assert len(result["changed"]) == 5 and len(result["added"]) == 2
    assert set(after) == set(before) | set(result["added"])
    for incident_id in result["changed"]:
        assert parse_ticks(after[incident_id]["lastUpdateTime"]) > parse_ticks(
            before[incident_id]["lastUpdateTime"]
        )
        assert after[incident_id] != before[incident_id]
    newest = list(after)[:7]
    assert set(newest) == set(result["changed"]) | set(result["added"])


def test_changes_indexed_late_appear_behind_changes_already_listed():
    store = fresh(3)
    listed = store.evolve(TID, changed=3, new=0)
    late = store.evolve(TID, changed=2, new=1, late_seconds=120)
    truth = store.ground_truth(TID)
    when = {i["incidentId"]: parse_ticks(i["lastUpdateTime"]) for i in truth}
    late_ids = set(late["changed"]) | set(late["added"])
    assert len(late_ids) == 3 and not late_ids & set(listed["changed"])
    # Stamped two minutes back: behind the changes made before them, so a client whose
    # watermark is past those must look back to see them.
    assert {i["incidentId"] for i in truth[:3]} == set(listed["changed"])
    assert max(when[i] for i in late_ids) < min(when[i] for i in listed["changed"])


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("2020-09-06T14:46:57.0733333Z", "2020-09-06T14:46:57.0733333Z"),
        ("2020-09-06T14:46:57.29Z", "2020-09-06T14:46:57.29Z"),
        ("2020-09-06T14:46:57Z", "2020-09-06T14:46:57Z"),
        ("2020-09-06T16:46:57.5+02:00", "2020-09-06T14:46:57.5Z"),
    ],
)
def test_times_have_up_to_seven_fractional_digits(text, back):
    assert format_ticks(parse_ticks(text)) == back
