"""A trigram index per tenant for staff searches (PostgreSQL only, like 0003's).

pg_trgm's index on search_text answers "which incidents contain 'powershell'" for every
tenant at once: ~70,000 of a million. A staff member who sees 50 tenants needs the ~3,500 of
theirs, and filtering the 70,000 by tenant read them all. This index keys each trigram by
its tenant ("1281:pow"), so a search is one small index scan per visible tenant
(incidents/filters.py, IncidentFilter._in_visible_tenants).
"""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # pg_trgm's schema (0003 created the extension wherever the search path put it): an
        # index expression must not depend on the search path.
        cursor.execute(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'show_trgm'"
        )
        schema = schema_editor.connection.ops.quote_name(cursor.fetchone()[0])
    schema_editor.execute(
        "CREATE OR REPLACE FUNCTION incident_search_keys(tenant bigint, body text) "
        # COST: evaluating it per row (a filter, not the index) is costly; said so, the
        # planner reads the index instead, even for a term that few incidents contain.
        "RETURNS text[] LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10000 "
        f"RETURN ARRAY(SELECT tenant::text || ':' || t FROM unnest({schema}.show_trgm(body)) t)"
    )
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS incident_search_tenant_trgm ON incidents_incident "
        "USING gin (incident_search_keys(tenant_id, search_text))"
    )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS incident_search_tenant_trgm")
    schema_editor.execute("DROP FUNCTION IF EXISTS incident_search_keys(bigint, text)")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0010_counters")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
