"""Storing whatever Microsoft sends (issue 10): text every database accepts, no silent cut,
one poison incident never blocks its page, and nothing is lost without a trace.

These matter on PostgreSQL (SQLite accepts NULs); CI runs them there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partner_portal.incidents.filters import IncidentFilter
from partner_portal.incidents.models import (
    Alert,
    Incident,
    IncidentChange,
    IncidentSearch,
    SyncProblem,
)
from partner_portal.incidents.store import (
    LeaseLost,
    problem_key,
    store_fenced_page,
    store_items,
    store_page,
)
from partner_portal.microsoft import defender
from tests.factories import ConsentedTenantFactory, IncidentFactory

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL refuses these values"
)


def incident(n: object, **fields) -> dict:
    return {"incidentId": n, "lastUpdateTime": "2026-01-02T03:04:05.1234567Z", **fields}


def parse(*items: object) -> tuple[list[defender.IncidentData], list[defender.ItemProblem]]:
    incidents, problems, _ = defender.parse_list_items({"value": list(items)})
    return incidents, problems


def store(tenant, *items: object):
    incidents, problems = parse(*items)
    return store_items(
        tenant=tenant, incidents=incidents, synced_at=timezone.now(), problems=problems
    )


def test_nul_and_lone_surrogates_are_stored_repaired_and_flagged(db):
    tenant = ConsentedTenantFactory()
    stored = store(
        tenant,
        incident(
            1,
            incidentName="cmd\x00.exe",
            comments=[{"comment": "half \ud83d"}],
            tags=["\x00"],
            alerts=[
                {
                    "alertId": "a\x00",
                    "title": "t\udc00",
                    "entities": [{"processCommandLine": "x\x00y", "registryValue": "\x00"}],
                }
            ],
        ),
        incident(2, incidentName="clean"),
    )
    assert (stored.created, stored.problems) == (2, 0)
    row = Incident.objects.get(tenant=tenant, microsoft_id=1)
    assert row.text_repaired
    assert row.name == "cmd\ufffd.exe"
    assert row.raw["incidentName"] == "cmd\ufffd.exe"
    assert row.comments == [{"comment": "half \ufffd"}]
    assert row.tags == ["\ufffd"]
    alert = row.alerts.get()
    assert (alert.microsoft_id, alert.title) == ("a\ufffd", "t\ufffd")
    assert alert.entities == [{"processCommandLine": "x\ufffdy", "registryValue": "\ufffd"}]
    assert not Incident.objects.get(tenant=tenant, microsoft_id=2).text_repaired


def test_long_alert_ids_sharing_a_prefix_are_stored_whole(db):
    tenant = ConsentedTenantFactory()
    prefix = "da" + "7" * 298
    ids = [prefix + "_1", prefix + "_2", "x" * 5000]
    store(tenant, incident(1, alerts=[{"alertId": a} for a in ids]))
    assert sorted(Alert.objects.values_list("microsoft_id", flat=True)) == sorted(ids)
    assert Incident.objects.get(microsoft_id=1).alert_count == 3


def test_long_values_are_not_cut(db):
    tenant = ConsentedTenantFactory()
    url = "https://security.microsoft.com/incidents/1?tid=" + "a" * 800
    store(
        tenant,
        incident(
            1,
            incidentUri=url,
            assignedTo="x" * 600,
            classification="C" * 100,
            alerts=[{"alertId": "a", "detectionSource": "D" * 300, "category": "c" * 90}],
        ),
    )
    row = Incident.objects.get()
    assert (row.portal_url, row.assigned_to, row.classification) == (url, "x" * 600, "C" * 100)
    assert row.alerts.get().detection_source == "D" * 300
    assert row.portal_link == url


@pytest.mark.parametrize(
    "field", ["severity", "status", "classification", "determination", "assignedTo"]
)
def test_a_huge_value_nothing_compresses_does_not_keep_its_incident_out(db, field):
    # 6,000 random characters: more than a btree row holds (2,704 bytes) even compressed.
    huge = os.urandom(3000).hex()
    tenant = ConsentedTenantFactory()
    stored = store(tenant, incident(1, **{field: huge}), incident(2))
    assert (stored.created, stored.problems) == (2, 0)
    assert not SyncProblem.objects.exists()
    row = Incident.objects.get(microsoft_id=1)
    assert row.raw[field] == huge  # kept whole, whatever is stored beside it
    if field == "assignedTo":
        assert row.assigned_to == huge
        # Found by the whole address, in any case, and not by its first 200 characters.
        for value, found in [(huge.upper(), [1]), (huge[:200], [])]:
            listed = IncidentFilter({"assigned_to": value}, queryset=Incident.objects.all())
            assert [i.microsoft_id for i in listed.qs] == found
    else:
        column = {"severity": "severity", "status": "status"}.get(field, field)
        assert getattr(row, column) == huge[:199] + "…"


def test_graph_spellings_are_stored_in_one_vocabulary_and_unknown_values_as_received(db):
    tenant = ConsentedTenantFactory()
    store(
        tenant,
        incident(1, severity="high", status="resolved", classification="truePositive"),
        incident(2, severity="Critical", status="Snoozed", determination="somethingNew"),
        incident(3, severity="informational", status="inProgress"),
    )
    rows = {i.microsoft_id: i for i in Incident.objects.filter(tenant=tenant)}
    assert (rows[1].severity, rows[1].status, rows[1].classification) == (
        "High",
        "Resolved",
        "TruePositive",
    )
    assert rows[1].raw["status"] == "resolved"
    # An unknown severity ranks with unspecified (0), below Informational (1).
    assert (rows[2].severity, rows[2].severity_rank, rows[3].severity_rank) == ("Critical", 0, 1)
    # An unknown status is neither open nor closed: the "open" filter leaves it out.
    assert rows[2].status == "Snoozed"
    listed = IncidentFilter({"status": "open"}, queryset=Incident.objects.filter(tenant=tenant))
    assert {i.microsoft_id for i in listed.qs} == {3}


@pytest.mark.parametrize(
    ("cloud", "url", "linked"),
    [
        ("commercial", "https://security.microsoft.com/incidents/1?tid=t", True),
        ("gcc", "https://security.microsoft.com/incidents/1", True),
        ("gcc_high", "https://security.microsoft.us/incidents/1", True),
        ("dod", "https://security.apps.mil/incidents/1", True),
        ("commercial", "https://security.microsoft.us/incidents/1", False),
        ("commercial", "https://security.microsoft.com.evil.example/x", False),
        ("commercial", "https://evil.example/?security.microsoft.com", False),
        ("commercial", "http://security.microsoft.com/incidents/1", False),
        ("commercial", "javascript:alert(1)//security.microsoft.com", False),
        ("commercial", "https://[::1/", False),
    ],
)
def test_the_defender_link_is_shown_only_for_the_clouds_portal_host(db, cloud, url, linked):
    row = IncidentFactory(tenant=ConsentedTenantFactory(cloud=cloud), portal_url=url)
    assert row.portal_link == (url if linked else "")


def test_an_unparseable_item_is_a_problem_counted_again_and_cleared_when_it_stores(db):
    tenant = ConsentedTenantFactory()
    bad = incident(7, alerts=[{"title": "no alertId"}])
    stored = store(tenant, incident(1), bad, incident("abc"))
    assert (stored.created, stored.problems) == (1, 2)
    problem = SyncProblem.objects.get(tenant=tenant, microsoft_id="7")
    assert "alertId" in problem.error
    assert json.loads(problem.raw_text) == bad
    assert (problem.count, problem.retryable_id) == (1, 7)
    assert SyncProblem.objects.get(tenant=tenant, microsoft_id="abc").retryable_id is None

    store(tenant, bad)
    problem.refresh_from_db()
    assert problem.count == 2 and problem.last_seen > problem.first_seen

    store(tenant, incident(7, alerts=[{"alertId": "now fine"}]))
    assert not SyncProblem.objects.filter(tenant=tenant, microsoft_id="7").exists()
    assert Incident.objects.filter(tenant=tenant, microsoft_id=7).exists()
    assert problem_key("007") == problem_key("7")
    assert problem_key("²") != problem_key("2")  # found by the property test below


@on_postgresql
def test_an_item_the_database_refuses_becomes_a_problem_and_the_page_is_stored(db):
    tenant = ConsentedTenantFactory()
    items = [incident(n) for n in range(1, 6)]
    # Whatever the database may refuse one day (every value known to be refused is now
    # stored): a constraint for this test only, undone with its transaction.
    items[3]["incidentName"] = "poison " + hashlib.sha256(b"4").hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE incidents_incident ADD CONSTRAINT test_poison"
            " CHECK (name NOT LIKE 'poison %%') NOT VALID"
        )
    stored = store(tenant, *items)
    assert (stored.created, stored.updated, stored.problems) == (4, 0, 1)
    assert set(Incident.objects.values_list("microsoft_id", flat=True)) == {1, 2, 3, 5}
    assert set(SyncProblem.objects.values_list("microsoft_id", flat=True)) == {"4"}
    problem = SyncProblem.objects.get(microsoft_id="4")
    assert items[3]["incidentName"] in problem.raw_text and "test_poison" in problem.error


@on_postgresql
def test_a_fenced_page_the_database_refuses_is_stored_again_item_by_item(db):
    # The sync's page has no savepoint of its own: a refusal rolls its transaction back
    # (the lease's renewal and the snapshot's locks too), and a new one stores it item by
    # item, with the fence renewed.
    tenant = ConsentedTenantFactory()
    items = [incident(n, incidentName=f"n{n}") for n in range(1, 6)]
    items[1]["incidentName"] = "poison " + hashlib.sha256(b"2").hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE incidents_incident ADD CONSTRAINT test_poison"
            " CHECK (name NOT LIKE 'poison %%') NOT VALID"
        )
    token = tenant.take_sync_lease(now=timezone.now())
    incidents, _ = parse(*items)
    stored = store_fenced_page(
        tenant=tenant, token=token, incidents=incidents, synced_at=timezone.now()
    )
    assert (stored.created, stored.updated, stored.problems) == (4, 0, 1)
    assert set(Incident.objects.values_list("microsoft_id", flat=True)) == {1, 3, 4, 5}
    assert set(IncidentSearch.objects.values_list("text", flat=True)) == {"n1", "n3", "n4", "n5"}
    assert list(SyncProblem.objects.values_list("microsoft_id", flat=True)) == ["2"]
    # Each change recorded once: the refused attempt's rows went with its transaction.
    assert IncidentChange.objects.filter(tenant=tenant).count() == 4
    assert tenant.renew_sync_lease(token=token)  # still this run's
    other = ConsentedTenantFactory()
    with pytest.raises(LeaseLost):  # and a run without the lease writes nothing
        store_fenced_page(
            tenant=other, token="stale", incidents=incidents, synced_at=timezone.now()
        )
    assert not Incident.objects.filter(tenant=other).exists()


def test_nan_and_infinity_are_stored_as_null(db):
    # Not JSON, but json.loads reads them; PostgreSQL's jsonb would refuse them, and
    # json_text writes them as null (as orjson does) rather than lose the incident.
    tenant = ConsentedTenantFactory()
    item = incident(1, futureScore=math.nan, alerts=[{"alertId": "a", "score": -math.inf}])
    assert store(tenant, item).problems == 0
    stored = Incident.objects.get(microsoft_id=1)
    assert stored.raw["futureScore"] is None
    assert stored.alerts.get().raw["score"] is None


def test_store_page_keeps_its_signature(db):
    tenant = ConsentedTenantFactory()
    incidents, _ = parse(incident(1), incident(2))
    assert store_page(tenant=tenant, incidents=incidents, synced_at=timezone.now()) == (2, 0)
    # The same again: nothing created, nothing changed.
    assert store_page(tenant=tenant, incidents=incidents, synced_at=timezone.now()) == (0, 0)


def test_the_fast_path_stays_a_few_queries_for_a_page(db, django_assert_max_num_queries):
    tenant = ConsentedTenantFactory()
    incidents, _ = parse(*[incident(n, alerts=[{"alertId": f"a{n}"}]) for n in range(100)])
    # A handful, whatever the page size (SQLite splits the bulk INSERTs into a few batches;
    # the summary's counts are two more: incidents/counters.py).
    with django_assert_max_num_queries(13):
        store_page(tenant=tenant, incidents=incidents, synced_at=timezone.now())


def test_the_tenant_page_lists_its_sync_problems(alice_client, tenant_a, tenant_b):
    store(tenant_a, incident(41, alerts=[{}]))
    store(tenant_b, incident(42, alerts=[{}]))
    html = alice_client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk}))
    text = html.content.decode()
    assert "Sync problems" in text
    assert "An alert without alertId" in text
    assert ">41<" in text and ">42<" not in text


# --- the property: parse + store never raises, and nothing is lost without a trace ---------

hostile_char = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(["\x00", "\ud83d", "\udc00", "\ufffd", "'", "\\"]),
)
hostile_text = st.text(alphabet=hostile_char, max_size=40) | st.builds(
    lambda head, n, tail: head * n + tail,
    st.sampled_from(["a", "\x00", "é"]),
    st.integers(0, 3000),
    st.text(alphabet=hostile_char, max_size=5),
)
odd_time = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis wants naive bounds)
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.just(UTC),
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2026-01-01T00:00:00.123456789Z",
            "2026-02-30T00:00:00Z",
            "",
            "yesterday",
        ]
    ),
    hostile_text,
    st.none(),
    st.integers(),
)
incident_id = st.one_of(
    st.integers(1, 50),
    st.integers(1, 50).map(str),
    st.integers(-5, 2**70),
    hostile_text,
    st.none(),
    st.floats(allow_nan=True),
)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=10,
)
enum_value = st.one_of(
    st.sampled_from(["High", "high", "inProgress", "RESOLVED", "notMalicious", "Critical"]),
    hostile_text,
    json_value,
)
alert = st.fixed_dictionaries(
    {"alertId": st.one_of(hostile_text, st.just("p" * 300) | st.just("p" * 300 + "2"))},
    optional={
        "title": hostile_text,
        "severity": enum_value,
        "status": enum_value,
        "firstActivity": odd_time,
        "entities": st.lists(st.dictionaries(hostile_text, json_value, max_size=4), max_size=3),
        "mitreTechniques": json_value,
    },
)
hostile_incident = st.fixed_dictionaries(
    {"incidentId": incident_id, "lastUpdateTime": odd_time},
    optional={
        "incidentName": hostile_text,
        "createdTime": odd_time,
        "severity": enum_value,
        "status": enum_value,
        "classification": enum_value,
        "determination": enum_value,
        "assignedTo": json_value,
        "tags": json_value,
        "comments": json_value,
        "redirectIncidentId": incident_id,
        "incidentUri": hostile_text,
        "alerts": st.lists(alert, max_size=4) | json_value,
        "extra": json_value,
    },
)
items = st.lists(hostile_incident | json_value, max_size=12)


@given(items=items)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_parse_and_store_never_raise_and_every_item_is_stored_or_a_problem(db, items):
    tenant = ConsentedTenantFactory()
    incidents, problems, _ = defender.parse_list_items({"value": items})
    assert len(incidents) + len(problems) == len(items)
    stored = store_items(
        tenant=tenant, incidents=incidents, synced_at=timezone.now(), problems=problems
    )
    stored_ids = set(Incident.objects.filter(tenant=tenant).values_list("microsoft_id", flat=True))
    keys = set(SyncProblem.objects.filter(tenant=tenant).values_list("key", flat=True))
    for item in incidents:
        assert item.incident_id in stored_ids or problem_key(str(item.incident_id)) in keys
    for problem in problems:
        assert problem_key(problem.incident_id, problem.raw_text) in keys
    assert stored.created == len(stored_ids)
    # What was stored reads back as it was parsed (repaired, never cut); of one ID twice in
    # a page, the newest (the later one, on a tie) is kept.
    kept: dict[int, defender.IncidentData] = {}
    for item in incidents:
        if (
            item.incident_id not in kept
            or item.last_update_time >= kept[item.incident_id].last_update_time
        ):
            kept[item.incident_id] = item
    for row in Incident.objects.filter(tenant=tenant):
        item = kept[row.microsoft_id]
        assert (row.name, row.severity, row.status) == (item.name, item.severity, item.status)
        assert (row.assigned_to, row.portal_url) == (item.assigned_to, item.incident_uri)
        assert row.text_repaired == item.text_repaired
