"""Parsing whatever Microsoft sends: one bad item fails itself, never its page (issue 10).

Plain parsing tests (no HTTP, no database). Storing is in tests/incidents/test_hostile_store.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from partner_portal.microsoft import defender, errors

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"
LISTS = sorted(p.name for p in FIXTURES.glob("*list-incidents*.json"))
SINGLE = [
    "graph-get-incident.example.json",
    "graph-update-incident.response.json",
    "graph-update-incident.v2022.response.json",
]


def incident(n: object, **fields) -> dict:
    return {"incidentId": n, "lastUpdateTime": "2026-01-02T03:04:05Z", **fields}


def body(*items: object) -> dict:
    return {"value": list(items)}


@pytest.mark.parametrize("name", LISTS)
def test_every_published_list_example_parses_without_a_problem(name):
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    incidents, problems, _ = defender.parse_list_items(data)
    assert problems == []
    assert len(incidents) == len(data["value"]) > 0
    for item in incidents:
        assert item.incident_id > 0
        assert item.last_update_time.tzinfo is UTC
        assert item.severity in {"High", "Medium", "Low", "Informational", "UnSpecified"}
        assert item.status in {"Active", "InProgress", "Resolved", "Redirected"}


@pytest.mark.parametrize("name", SINGLE)
def test_every_published_single_incident_example_parses(name):
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    item = defender.parse_incident(data)
    assert item.incident_id == int(data["id"])  # Graph's ID is a string of digits
    assert item.status in {"Active", "Resolved"}  # "active", "Resolved"…: one vocabulary
    assert item.raw["status"] == data["status"]  # the original kept in raw


def test_defenders_partial_update_example_parses():
    data = json.loads((FIXTURES / "defender-update-incident.response.json").read_text("utf-8"))
    # As the client completes it: the ID it sent, and a lastUpdateTime of its own.
    item = defender.parse_incident({**data, "incidentId": 7, "lastUpdateTime": "2026-01-01Z"})
    assert (item.incident_id, item.status, item.classification) == (
        7,
        "Resolved",
        "TruePositive",
    )


def test_one_bad_item_is_a_problem_of_its_own_and_the_page_parses():
    bad = [
        incident(1, alerts=[{"title": "no id"}]),  # missing alertId
        incident("INC-7"),  # a non-numeric ID
        incident("²"),  # str.isdigit() says yes, int() says no
        incident(2**63),  # beyond a long
        {"incidentId": 3},  # no lastUpdateTime
        incident(4, lastUpdateTime="0001-01-01T00:00:00+05:00"),  # unreadable
        "not an object",
        incident(True),
        incident(5, alerts=["not an object"]),
    ]
    good = [incident(10), incident("11"), incident(12.0)]
    incidents, problems, _ = defender.parse_list_items(body(good[0], *bad, *good[1:]))
    assert [i.incident_id for i in incidents] == [10, 11, 12]
    assert len(problems) == len(bad)
    by_id = {p.incident_id: p for p in problems}
    assert "alertId" in by_id["1"].error
    assert "not a number" in by_id["INC-7"].error
    assert "out of range" in by_id[str(2**63)].error
    assert "lastUpdateTime" in by_id["3"].error
    assert by_id[""].raw_text == '"not an object"'
    for problem in problems:
        assert json.loads(problem.raw_text) in bad  # the item as received, whole


def test_a_problem_keeps_nul_and_lone_surrogates_as_ascii_escapes():
    item = {"incidentId": "x\x00", "incidentName": "\ud83d", "lastUpdateTime": "2026-01-01Z"}
    _, [problem], _ = defender.parse_list_items(body(item))
    assert problem.raw_text.isascii()
    assert json.loads(problem.raw_text) == item  # exactly what was received
    assert problem.incident_id == "x\ufffd"  # storable as a key


def test_a_page_counts_its_problem_items_when_paging_by_skip():
    incidents, problems, next_link = defender.parse_list_items(body(incident(1), incident("x")))
    assert (len(incidents), len(problems), next_link) == (1, 1, None)


def test_graph_string_ids_are_incident_numbers():
    assert defender.parse_incident({"id": "2972395", "lastUpdateDateTime": "2026-01-01Z"})
    assert defender.parse_incident(incident(" 42 ")).incident_id == 42


def test_a_year_0001_date_with_an_offset_is_unknown_not_an_overflow():
    assert defender.parse_time("0001-01-01T00:00:00+05:00") is None
    assert defender.parse_time("9999-12-31T23:59:59-05:00") is None
    assert defender.parse_time("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    item = defender.parse_incident(incident(1, createdTime="0001-01-01T00:00:00+05:00"))
    assert item.created_time == item.last_update_time
    assert item.raw["createdTime"] == "0001-01-01T00:00:00+05:00"
    alert = defender.parse_alert({"alertId": "a", "firstActivity": "0001-01-01T00:00:00+01:00"})
    assert alert.first_activity is None


def test_nul_and_lone_surrogates_are_repaired_in_fields_and_raw_alike():
    data = incident(
        1,
        incidentName="evil\x00name",
        comments=[{"comment": "half an emoji \ud83d", "createdBy": "x"}],
        tags=["t\udc00"],
        alerts=[
            {
                "alertId": "a1",
                "title": "ok",
                "entities": [{"entityType": "Registry", "registryValue": "v\x00\x00", "k\x00": 1}],
            }
        ],
    )
    item = defender.parse_incident(data)
    assert item.text_repaired
    assert item.name == "evil\ufffdname"
    assert item.comments == [{"comment": "half an emoji \ufffd", "createdBy": "x"}]
    assert item.raw["comments"] == item.comments
    assert item.tags == ["t\ufffd"]
    assert item.alerts[0].entities == [
        {"entityType": "Registry", "registryValue": "v\ufffd\ufffd", "k\ufffd": 1}
    ]
    assert item.alerts[0].raw["entities"] == item.alerts[0].entities
    # Everything else exactly as received; a valid pair (an emoji) is not a repair.
    assert item.raw["lastUpdateTime"] == data["lastUpdateTime"]
    assert not defender.parse_incident(incident(2, incidentName="ok \U0001f600")).text_repaired


def test_repair_text_returns_untouched_values_as_they_are():
    value = {"a": ["b", 1, None, {"c": 2.5}]}
    assert defender.repair_text(value) == (value, False)
    assert defender.repair_text(value)[0] is value


def test_enum_values_are_normalised_once_and_the_original_kept_in_raw():
    item = defender.parse_incident(
        incident(
            1,
            severity="high",
            status="inProgress",
            classification="truePositive",
            determination="notMalicious",
            alerts=[{"id": "a", "severity": "LOW", "status": "new"}],
        )
    )
    assert (item.severity, item.status) == ("High", "InProgress")
    assert (item.classification, item.determination) == ("TruePositive", "Clean")
    assert (item.alerts[0].severity, item.alerts[0].status) == ("Low", "New")
    assert item.raw["determination"] == "notMalicious"
    unknown = defender.parse_incident(incident(2, severity="Critical", status="Snoozed"))
    assert (unknown.severity, unknown.status) == ("Critical", "Snoozed")


def test_the_strict_parse_list_still_refuses_a_bad_item():
    with pytest.raises(errors.BadResponse, match="alertId"):
        defender.parse_list(body(incident(1, alerts=[{}])))


# Any code point, and often those around what needs repair: NUL, lone surrogates at both
# ends of both halves, a pair, an escape's own text.
TEXT = st.lists(
    st.characters(exclude_categories=())
    | st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "😀", "\\u0000"]),
    max_size=6,
).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(value=JSON_VALUES, ascii_only=st.booleans())
@example(value=["\udfff"], ascii_only=True)
@example(value={"\udc00": 1}, ascii_only=False)
@example(value={"k\x00": "😀"}, ascii_only=False)
def test_text_that_passes_the_byte_check_needs_no_repair(value, ascii_only):
    try:
        content = json.dumps(value, ensure_ascii=ascii_only).encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8: Microsoft sends it escaped
        content = json.dumps(value, ensure_ascii=True).encode()
    if not defender.text_needs_repair(content):
        assert defender.repair_text(json.loads(content)) == (json.loads(content), False)


def test_a_checked_page_parses_as_the_walk_would_and_a_nul_escape_is_caught():
    page = {"value": [incident(1, incidentName="Plain ✓ 😀")]}
    content = json.dumps(page).encode()  # the emoji as an escaped surrogate pair
    clean = json.dumps(page, ensure_ascii=False).encode()
    assert defender.text_needs_repair(content) and not defender.text_needs_repair(clean)
    walked, _, _ = defender.parse_list_items(json.loads(clean))
    checked = {"value": defender.CheckedItems(json.loads(clean)["value"])}
    assert defender.parse_list_items(checked)[0] == walked
    hostile = json.dumps({"value": [incident(2, incidentName="a\x00b")]}).encode()
    assert defender.text_needs_repair(hostile)
