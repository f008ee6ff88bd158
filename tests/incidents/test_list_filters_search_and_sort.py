"""The incident list: only the user's tenants, newest update first, every column; each filter,
the date ranges, search and every sort select exactly the right rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import ConsentedTenantFactory, UserFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

# The shared fixture (a module, not conftest.py: see dashboard_data).
contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

LIST = reverse("incidents:list")


def rows(response) -> list[str]:
    return [incident.name for incident in response.context["page"].incidents]


def get(client, **params):
    response = client.get(LIST, params)
    assert response.status_code == 200
    return response


def test_the_list_shows_only_the_users_tenants_newest_update_first(
    alice_client, contoso_and_fabrikam
):
    response = get(alice_client)
    assert rows(response) == [
        "Ransomware on FIN-01",
        "Phishing mail reported",
        "Unfamiliar sign-in",
        "Suspicious PowerShell",
    ]
    assert b"Fabrikam" not in response.content
    assert response.context["count"] == 4


def test_the_row_shows_every_column(alice_client, contoso_and_fabrikam):
    html = get(alice_client, q="phishing").content.decode()
    assert "Contoso" in html
    assert "Phishing mail reported" in html
    assert '<td class="status">In progress</td>' in html
    assert "secop@contoso.com" in html
    assert 'class="badge sev-medium"' in html
    a2 = contoso_and_fabrikam["a2"]
    assert f'datetime="{a2.last_update_time.isoformat()}"' in html
    assert reverse("incidents:detail", kwargs={"incident_id": a2.pk}) in html


def test_the_filter_form_marks_the_chosen_options_and_no_others(
    alice_client, tenant_a, team_a, contoso_and_fabrikam
):
    tailspin = ConsentedTenantFactory(display_name="Tailspin <Toys>", groups=[team_a])
    # The options are written once and reused: the second page marks its own choice only.
    get(alice_client, tenant=tailspin.pk, status="Active", sort="-created")
    forged = f'{tailspin.pk}"><option value="{tailspin.pk}'
    html = get(
        alice_client, tenant=[tenant_a.pk, forged], status="open", sort="created"
    ).content.decode()
    assert f'<option value="{tenant_a.pk}" selected>Contoso</option>' in html
    assert f'<option value="{tailspin.pk}">Tailspin &lt;Toys&gt;</option>' in html
    assert '<option value="open" selected>' in html
    assert '<option value="created" selected>' in html
    assert html.count(" selected>") == 3


def test_a_user_without_tenants_sees_an_empty_list(client, charlie, contoso_and_fabrikam):
    client.force_login(charlie)
    response = get(client)
    assert rows(response) == []
    assert b"No incidents match" in response.content


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"severity": "High"}, ["Ransomware on FIN-01"]),
        ({"severity": ["High", "Low"]}, ["Ransomware on FIN-01", "Unfamiliar sign-in"]),
        ({"status": "Resolved"}, ["Unfamiliar sign-in"]),
        (
            {"status": "open"},
            ["Ransomware on FIN-01", "Phishing mail reported", "Suspicious PowerShell"],
        ),
        ({"classification": "FalsePositive"}, ["Unfamiliar sign-in"]),
        ({"determination": "Other"}, ["Unfamiliar sign-in"]),
        ({"assigned_to": "SECOP@contoso.com"}, ["Phishing mail reported"]),
        (
            {"assigned_to": "unassigned"},
            ["Ransomware on FIN-01", "Unfamiliar sign-in", "Suspicious PowerShell"],
        ),
        ({"updated": "24h"}, ["Ransomware on FIN-01"]),
        ({"updated": "7d"}, ["Ransomware on FIN-01", "Phishing mail reported"]),
        (
            {"updated": "30d"},
            ["Ransomware on FIN-01", "Phishing mail reported", "Unfamiliar sign-in"],
        ),
        ({"q": "RANSOMWARE"}, ["Ransomware on FIN-01"]),
        ({"q": "powershell"}, ["Suspicious PowerShell"]),
        ({"q": "nothing like this"}, []),
        ({"severity": "High", "status": "Active"}, ["Ransomware on FIN-01"]),
    ],
)
def test_filters_narrow_the_list_to_exactly_the_matching_incidents(
    alice_client, contoso_and_fabrikam, params, expected
):
    assert rows(get(alice_client, **params)) == expected


def test_the_custom_update_range_includes_whole_days(alice_client, contoso_and_fabrikam):
    a3 = contoso_and_fabrikam["a3"]
    day = a3.last_update_time.date()
    response = get(alice_client, updated_from=day.isoformat(), updated_to=day.isoformat())
    assert rows(response) == ["Unfamiliar sign-in"]
    response = get(alice_client, updated_from=(day + timedelta(days=1)).isoformat())
    assert rows(response) == ["Ransomware on FIN-01", "Phishing mail reported"]


def test_the_created_range_includes_whole_utc_days_and_nothing_else(alice_client, tenant_a):
    from datetime import UTC, datetime

    from partner_portal.incidents.models import Incident

    day = datetime(2026, 3, 10, tzinfo=UTC)
    created = {
        "day before, last second": day - timedelta(seconds=1),
        "first second": day,
        "last second": day + timedelta(days=1, seconds=-1),
        "day after, first second": day + timedelta(days=1),
    }
    for name, when in created.items():
        incident = make_incident(tenant_a, name=name)
        Incident.objects.filter(pk=incident.pk).update(created_time=when)
    one_day = get(alice_client, created_from="2026-03-10", created_to="2026-03-10")
    assert sorted(rows(one_day)) == ["first second", "last second"]
    assert sorted(rows(get(alice_client, created_from="2026-03-11"))) == ["day after, first second"]
    assert sorted(rows(get(alice_client, created_to="2026-03-09"))) == ["day before, last second"]
    # The form shows the range, so that Apply keeps it.
    assert 'name="created_from" id="id_created_from" value="2026-03-10"' in (
        one_day.content.decode()
    )


def test_search_covers_alert_titles_devices_and_users_via_search_text(alice_client, tenant_a):
    make_incident(
        tenant_a,
        name="Multi-stage incident",
        search_text="multi-stage incident suspicious rundll32 laptop-77 j.doe@contoso.com",
    )
    make_incident(tenant_a, name="Other incident")
    assert rows(get(alice_client, q="LAPTOP-77")) == ["Multi-stage incident"]
    assert rows(get(alice_client, q="j.doe@")) == ["Multi-stage incident"]
    assert rows(get(alice_client, q="  rundll32 ")) == ["Multi-stage incident"]


def test_the_tenant_filter_takes_several_tenants(
    alice_client, alice, team_b, tenant_a, tenant_b, contoso_and_fabrikam
):
    alice.groups.add(team_b)
    response = get(alice_client, tenant=[tenant_a.pk, tenant_b.pk], severity="High")
    assert rows(response) == ["Ransomware on FIN-01", "Fabrikam ransomware"]
    response = get(alice_client, tenant=tenant_b.pk)
    assert rows(response) == ["Fabrikam ransomware", "Fabrikam phishing"]


def test_a_tenant_the_user_cannot_see_is_not_a_valid_filter(
    alice_client, tenant_b, contoso_and_fabrikam
):
    response = get(alice_client, tenant=tenant_b.pk)
    assert "tenant" in response.context["filter"].form.errors
    assert "Fabrikam" not in " ".join(rows(response))
    assert b"Fabrikam" not in response.content


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-updated", ["a1", "a2", "c3", "a4"]),
        ("updated", ["a4", "c3", "a2", "a1"]),
        ("-created", ["c3", "a1", "a2", "a4"]),
        ("created", ["a4", "a2", "a1", "c3"]),
        ("-severity", ["a1", "c3", "a2", "a4"]),
        ("severity", ["a4", "a2", "c3", "a1"]),
    ],
)
def test_every_sort_orders_rows_exactly(alice_client, tenant_a, sort, expected):
    made = {
        "a1": make_incident(tenant_a, name="a1", severity="High", hours_ago=1, created_hours_ago=5),
        "a2": make_incident(tenant_a, name="a2", severity="Low", hours_ago=2, created_hours_ago=6),
        "a4": make_incident(
            tenant_a, name="a4", severity="Informational", hours_ago=4, created_hours_ago=9
        ),
        # Same severity as a1 and updated later than a1's tie-breaker, created last.
        "c3": make_incident(tenant_a, name="c3", severity="High", hours_ago=3, created_hours_ago=1),
    }
    assert set(made) == set(expected)
    assert rows(get(alice_client, sort=sort)) == expected


def test_an_unknown_sort_falls_back_to_the_newest_update(alice_client, contoso_and_fabrikam):
    response = get(alice_client, sort="name; drop table")
    assert rows(response)[0] == "Ransomware on FIN-01"


# --- search for staff who see some tenants (a trigram index per tenant on PostgreSQL) ------

SEARCH_NAMES = [
    "Suspicious PowerShell command line",
    "powershell.exe -enc on DESKTOP-AF12",
    "Power shell",  # not "powershell"
    "Müller's mailbox rule",
    "julia.novak42 signed in",
    "ab",
    "Ransomware on FIN-01",
]


@pytest.mark.parametrize(
    "term",
    [
        "powershell",
        "PowerShell",
        "owershel",
        "desktop-af",
        "müller",
        "ller's",
        "julia.novak4",
        "ab",
        "n-0",
        "#42",
        "shell com",
        "e -e",
    ],
)
def test_a_staff_search_finds_exactly_the_matches_in_their_tenants(
    alice_client, tenant_a, tenant_b, term
):
    for n, name in enumerate(SEARCH_NAMES):
        make_incident(tenant_a, name=name, microsoft_id=4200 + n)
        make_incident(tenant_b, name=name, microsoft_id=5200 + n)
    response = alice_client.get("/", {"q": term})
    found = {i.name for i in response.context["page"].incidents}
    wanted = term.strip().lower()
    expected = {name for name in SEARCH_NAMES if wanted in name.lower()}
    if wanted.lstrip("#").isdigit():
        expected |= {
            SEARCH_NAMES[n] for n in range(len(SEARCH_NAMES)) if 4200 + n == int(wanted.lstrip("#"))
        }
    assert found == expected
    assert {i.tenant_id for i in response.context["page"].incidents} <= {tenant_a.pk}
    assert response.context["count"] == len(expected)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the per-tenant trigram index")
def test_a_staff_search_goes_through_the_per_tenant_index_and_everyones_does_not(
    alice_client, client, tenant_a
):
    make_incident(tenant_a, name="Suspicious PowerShell")
    with CaptureQueriesContext(connection) as staff:
        page = alice_client.get("/", {"q": "powershell"})
    keyed = [q["sql"] for q in staff.captured_queries if "incident_search_word_keys" in q["sql"]]
    assert keyed
    # The page's query reads no tenant (a join PostgreSQL misplans with the keys' estimate):
    # the tenants' names come from a query of their own, and are on the page.
    assert not [sql for sql in keyed if '"tenants_tenant"."display_name"' in sql]
    # Nor the access rule's join: its tenants as the list the keys were made from (the
    # rule read them in this request), one hash lookup a match instead of a nested loop.
    # (The counts' statement also counts each view, without the search: those keep it.)
    searches = [part for sql in keyed for part in sql.split("(SELECT COUNT(*)")]
    searches = [part for part in searches if "incident_search_word_keys" in part]
    assert len(searches) >= 2  # the page and its count
    assert not [part for part in searches if "auth_user_groups" in part]
    assert all(f'"tenant_id" IN ({tenant_a.pk})' in part for part in searches)
    assert [i.tenant.display_name for i in page.context["page"].incidents] == [
        tenant_a.display_name
    ]
    client.force_login(UserFactory(username="root", is_superuser=True))
    with CaptureQueriesContext(connection) as root:
        response = client.get("/", {"q": "powershell"})
    assert [i.name for i in response.context["page"].incidents] == ["Suspicious PowerShell"]
    assert not any("incident_search_word_keys" in q["sql"] for q in root.captured_queries)
