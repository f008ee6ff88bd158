"""raw_sql's conditional updates: one made only after another changed a row, on
PostgreSQL in one statement, elsewhere in two, to the same effect."""

from __future__ import annotations

import pytest
from django.db import connection

from partner_portal import raw_sql
from partner_portal.tenants.models import Tenant
from tests.factories import TenantFactory


@pytest.mark.parametrize(
    ("first_matches", "second_matches"), [(True, True), (True, False), (False, True)]
)
def test_an_update_after_another_is_made_only_if_the_first_changed_a_row(
    db, first_matches, second_matches
):
    first, second = TenantFactory(notes="first"), TenantFactory(notes="second")
    first_statement = raw_sql.update_statement(
        Tenant, {"id": first.pk, "notes": "first" if first_matches else "?"}, {"notes": "1st"}
    )
    where = {"id": second.pk, "notes": "second" if second_matches else "?"}
    folded = raw_sql.update_after(
        first_statement, Tenant, where, {"notes": "2nd"}, (raw_sql.column(Tenant, "notes"), ())
    )
    assert folded == (first_matches, ("2nd",) if first_matches and second_matches else None)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.notes == ("1st" if first_matches else "first")
    assert second.notes == ("2nd" if first_matches and second_matches else "second")


def test_on_postgresql_the_two_are_one_round_trip(db, django_assert_num_queries):
    first, second = TenantFactory(), TenantFactory()
    statement = raw_sql.update_statement(Tenant, {"id": first.pk}, {"notes": "1st"})
    expected = 1 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(expected):
        raw_sql.update_after(statement, Tenant, {"id": second.pk}, {"notes": "2nd"}, ("1", ()))
