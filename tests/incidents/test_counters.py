"""The summary's maintained counts (incidents/counters.py) equal a fresh count of the
incidents after any sequence of sync pages, action answers, deleted incidents, rebound and
deleted tenants — and the summary built from them says what counting would say."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partner_portal.incidents import counters
from partner_portal.incidents.models import Incident, IncidentCount, IncidentDayCount
from partner_portal.incidents.store import store_fenced_page, store_page
from partner_portal.microsoft import defender
from partner_portal.tenants.changes import update_tenant
from partner_portal.tenants.forms import TenantForm
from tests.factories import ConsentedTenantFactory, UserFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident
from tests.incidents.helpers import fresh_counts, kept_counts

contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam
BASE = datetime(2026, 3, 1, 12, tzinfo=UTC)


def incident_item(n: int, *, severity: str, status: str, created_day: int, version: int):
    return {
        "incidentId": n,
        "incidentName": f"Incident {n}",
        "severity": severity,
        "status": status,
        "createdTime": (BASE + timedelta(days=created_day, hours=n % 24)).isoformat(),
        "lastUpdateTime": (BASE + timedelta(days=40, minutes=version)).isoformat(),
    }


def parsed(*items: dict) -> list[defender.IncidentData]:
    incidents, problems, _ = defender.parse_list_items({"value": list(items)})
    assert not problems
    return incidents


# Microsoft's spellings, another case, and a value the portal does not know.
severities = st.sampled_from(["High", "medium", "Low", "Informational", "Critical"])
statuses = st.sampled_from(["Active", "inProgress", "Resolved", "Redirected", "Snoozed"])
items = st.builds(
    lambda n, severity, status, day, version: {
        "n": n,
        "severity": severity,
        "status": status,
        "created_day": day,
        "version": version,
    },
    st.integers(1, 12),
    severities,
    statuses,
    st.integers(0, 3),
    st.integers(0, 50),
)
operations = st.lists(
    st.one_of(
        # A sync page (fenced: an older copy than the stored one is skipped).
        st.tuples(st.just("sync"), st.integers(0, 1), st.lists(items, min_size=1, max_size=6)),
        # An action storing Microsoft's answer for one incident (store_page, unfenced).
        st.tuples(st.just("action"), st.integers(0, 1), items),
        st.tuples(st.just("delete"), st.integers(0, 1), st.lists(st.integers(1, 12), max_size=4)),
        st.tuples(st.just("rebind"), st.integers(0, 1), st.none()),
        st.tuples(st.just("delete tenant"), st.integers(0, 1), st.none()),
    ),
    min_size=1,
    max_size=12,
)


def run(operation, tenants: list, root) -> None:
    kind, which, arg = operation
    tenant = tenants[which]
    now = timezone.now()
    if kind == "sync":
        token = tenant.take_sync_lease(now=now)
        assert token
        store_fenced_page(
            tenant=tenant,
            token=token,
            incidents=parsed(*(incident_item(**item) for item in arg)),
            synced_at=now,
        )
        tenant.release_sync_lease(token=token)
    elif kind == "action":
        store_page(tenant=tenant, incidents=parsed(incident_item(**arg)), synced_at=now)
    elif kind == "delete":
        counters.delete_incidents(Incident.objects.filter(tenant=tenant, microsoft_id__in=arg))
    elif kind == "rebind":
        # A superuser gives the tenant another Entra tenant ID: its incidents go.
        data = {
            "display_name": tenant.display_name,
            "cloud": tenant.cloud,
            "entra_tenant_id": str(uuid.uuid4()),
            "sync_enabled": "on",
        }
        form = TenantForm(data, instance=tenant, user=root)
        assert form.is_valid(), form.errors
        update_tenant(form=form, actor=root)
    else:
        tenant.delete()
        tenants[which] = ConsentedTenantFactory()


@given(operations=operations)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_counts_equal_a_fresh_count_after_any_sequence_of_changes(db, operations):
    root = UserFactory(username="root", is_superuser=True)
    tenants = [ConsentedTenantFactory(), ConsentedTenantFactory()]
    for operation in operations:
        run(operation, tenants, root)
        assert kept_counts() == fresh_counts(), operation
    # And counting afresh changes nothing.
    counters.rebuild()
    assert kept_counts() == fresh_counts()


def test_rebuilding_repairs_counts_edited_by_hand(db, tenant_a, tenant_b):
    make_incident(tenant_a, severity="High", status="Active")
    make_incident(tenant_b, severity="Low", status="Resolved")
    expected = kept_counts()
    assert expected == fresh_counts()
    IncidentCount.objects.filter(tenant=tenant_a).update(n=7)
    IncidentDayCount.objects.filter(tenant=tenant_b).delete()
    # One tenant at a time leaves the others as they are.
    out = io.StringIO()
    call_command("rebuild_incident_counts", tenant=[tenant_b.pk], stdout=out)
    assert "Counted afresh: 2 rows" in out.getvalue()
    assert kept_counts()[0][(tenant_a.pk, "High", "Active")] == 7
    assert kept_counts()[1] == expected[1]
    call_command("rebuild_incident_counts", stdout=out)
    assert kept_counts() == expected


def test_a_real_page_with_an_unknown_severity_counts_it_as_unspecified_on_the_summary(
    alice_client, tenant_a
):
    store_page(
        tenant=tenant_a,
        incidents=parsed(
            incident_item(1, severity="Critical", status="Active", created_day=0, version=1),
            incident_item(2, severity="High", status="Resolved", created_day=0, version=1),
        ),
        synced_at=timezone.now(),
    )
    summary = alice_client.get(reverse("incidents:summary")).context["summary"]
    assert dict(summary.open_by_severity) == {
        "High": 0,
        "Medium": 0,
        "Low": 0,
        "Informational": 0,
        "UnSpecified": 1,
    }


def test_the_summary_reads_the_counts_not_the_incidents(
    alice_client, tenant_a, contoso_and_fabrikam, django_assert_max_num_queries
):
    # Open counts and the chart: one query each, whatever the number of incidents (with
    # the session read and saved, the user, the visible tenants and the banner's failing
    # channels).
    with django_assert_max_num_queries(10) as captured:
        alice_client.get(reverse("incidents:summary"))
    assert not any('FROM "incidents_incident"' in q["sql"] for q in captured.captured_queries)
