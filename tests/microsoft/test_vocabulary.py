"""One vocabulary for Defender's and Graph's spellings of incident values."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from partner_portal.microsoft import vocabulary
from partner_portal.microsoft.vocabulary import Kind

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "microsoft"


def test_defender_and_graph_spellings_normalise_to_one_value():
    assert vocabulary.normalise(Kind.STATUS, "InProgress") == "InProgress"
    assert vocabulary.normalise(Kind.STATUS, "inProgress") == "InProgress"
    assert vocabulary.normalise(Kind.STATUS, "resolved") == "Resolved"
    assert vocabulary.normalise(Kind.SEVERITY, "unknown") == "UnSpecified"
    assert vocabulary.normalise(Kind.DETERMINATION, "notMalicious") == "Clean"
    assert vocabulary.normalise(Kind.DETERMINATION, "CompromisedUser") == "CompromisedAccount"
    assert vocabulary.normalise(Kind.CLASSIFICATION, "truePositive") == "TruePositive"


def test_an_unknown_value_is_kept_as_received_and_shown_as_received():
    assert vocabulary.normalise(Kind.SEVERITY, "Critical") == "Critical"
    assert vocabulary.label(Kind.SEVERITY, "Critical") == "Critical"
    assert vocabulary.severity_rank("Critical") == vocabulary.severity_rank("UnSpecified") == 0
    assert vocabulary.is_open("Snoozed") is None


@given(st.text(min_size=0, max_size=600))
def test_an_unknown_value_is_cut_only_past_max_value_characters(value):
    stored = vocabulary.normalise(Kind.STATUS, value)
    if vocabulary.is_known(Kind.STATUS, stored):
        return
    assert len(stored) <= vocabulary.MAX_VALUE
    if len(value) <= vocabulary.MAX_VALUE:
        assert stored == value
    else:
        assert stored == value[: vocabulary.MAX_VALUE - 1] + "…"


def test_lowercase_resolved_is_closed_and_high_outranks_everything():
    assert vocabulary.is_open("resolved") is False
    assert vocabulary.is_open("awaitingAction") is True
    ranks = [vocabulary.severity_rank(s) for s in ("unknown", "informational", "low", "medium")]
    assert ranks == sorted(ranks) and max(ranks) < vocabulary.severity_rank("high")


def test_friendly_labels():
    assert vocabulary.label(Kind.STATUS, "InProgress") == "In progress"
    assert vocabulary.label(Kind.CLASSIFICATION, "informationalExpectedActivity") == (
        "Informational, expected activity"
    )
    assert vocabulary.label(Kind.DETERMINATION, "NotAvailable") == "Not available"


def test_only_documented_classification_determination_pairs_are_valid():
    assert vocabulary.is_valid_pair("TruePositive", "Malware")
    assert vocabulary.is_valid_pair("falsePositive", "notMalicious")
    assert not vocabulary.is_valid_pair("FalsePositive", "Malware")
    assert not vocabulary.is_valid_pair("Critical", "Other")


def test_graph_spellings_round_trip():
    for kind in Kind:
        for value in vocabulary.LABELS[kind]:
            assert vocabulary.normalise(kind, vocabulary.graph_value(kind, value)) == value


def test_every_value_in_microsofts_examples_is_known():
    defender = json.loads((FIXTURES / "defender-list-incidents.example.json").read_text())
    graph = json.loads((FIXTURES / "graph-list-incidents.example.json").read_text())
    fields = {
        Kind.SEVERITY: "severity",
        Kind.STATUS: "status",
        Kind.CLASSIFICATION: "classification",
        Kind.DETERMINATION: "determination",
    }
    for incident in defender["value"] + graph["value"]:
        for kind, field in fields.items():
            value = incident.get(field)
            if value is not None:
                assert vocabulary.is_known(kind, vocabulary.normalise(kind, value)), value


@given(st.text())
def test_normalise_never_raises_and_is_idempotent(value):
    for kind in Kind:
        once = vocabulary.normalise(kind, value)
        assert vocabulary.normalise(kind, once) == once
        vocabulary.label(kind, value)


def test_the_models_choices_and_ranks_are_the_vocabularys():
    """Severity and status are listed once (the vocabulary); the models' choices, the
    filters' and the rank follow it."""
    from partner_portal.incidents.models import Severity, Status

    assert Severity.choices == vocabulary.choices(Kind.SEVERITY)
    assert Status.choices == vocabulary.choices(Kind.STATUS)
    assert [vocabulary.severity_rank(s) for s in Severity.values] == [4, 3, 2, 1, 0]
