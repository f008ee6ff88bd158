"""The sync's statements are prepared on PostgreSQL after a few runs on a connection
(raw_sql.cursor, settings' prepare_threshold); the ORM's are not (client-side binding)."""

from __future__ import annotations

import pytest
from django.db import connection

from partner_portal import raw_sql
from partner_portal.incidents import outbox
from partner_portal.tenants.models import Tenant
from tests.factories import IncidentFactory, TenantFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's prepared statements"
)


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_a_sync_statement_is_prepared_after_five_runs_and_the_orms_are_not(db):
    tenant = TenantFactory()
    update = 'UPDATE "tenants_tenant" SET "notes"'
    for n in range(5):
        assert raw_sql.update(Tenant, {"id": tenant.pk}, {"notes": f"run {n}"}) == 1
        list(Tenant.objects.filter(pk=tenant.pk, notes__startswith="run"))
    assert not [s for s in prepared() if s.startswith(update)]
    raw_sql.update(Tenant, {"id": tenant.pk}, {"notes": "sixth"})
    assert [s for s in prepared() if s.startswith(update)]
    assert not [s for s in prepared() if "LIKE" in s]  # the ORM's query, run as often
    tenant.refresh_from_db()
    assert tenant.notes == "sixth"


def test_any_number_of_ids_shares_one_prepared_statement(db):
    tenant = TenantFactory()
    incidents = [IncidentFactory(tenant=tenant) for _ in range(7)]
    ids = [incident.microsoft_id for incident in incidents]
    for count in range(1, 8):  # seven runs, each with a different number of ids
        found = outbox.snapshot(tenant=tenant, microsoft_ids=ids[:count])
        assert sorted(found) == sorted(ids[:count])
    snapshots = [s for s in prepared() if "ANY(" in s and '"incidents_incident"' in s]
    assert len(snapshots) == 1
