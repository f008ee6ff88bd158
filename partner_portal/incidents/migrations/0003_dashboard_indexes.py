"""Indexes for the dashboard.

1. (tenant, severity, status): capped counts for staff who see some of the tenants.
2. A pg_trgm GIN index on Incident.search_text, so that the substring search
   (`search_text LIKE '%term%'`) doesn't scan every incident. PostgreSQL only, and not part
   of the model state: on SQLite it does nothing.
"""

from django.db import migrations, models


def create_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # Needs a role allowed to create the extension (pg_trgm is a trusted extension since
    # PostgreSQL 13, so a database owner is enough).
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS incident_search_trgm ON incidents_incident "
        "USING gin (search_text gin_trgm_ops)"
    )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS incident_search_trgm")


class Migration(migrations.Migration):

    dependencies = [
        ("incidents", "0002_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(
                fields=["tenant", "severity", "status"], name="incident_tenant_sev"
            ),
        ),
        migrations.RunPython(create_trigram_index, drop_trigram_index, elidable=False),
    ]
