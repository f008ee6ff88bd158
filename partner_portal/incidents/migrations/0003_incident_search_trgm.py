"""A pg_trgm GIN index on Incident.search_text, so that the dashboard's substring search
(`search_text LIKE '%term%'`) doesn't scan every incident. PostgreSQL only: on SQLite this
migration does nothing (the model state doesn't change on either database)."""

from django.db import migrations


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # Needs a role allowed to create the extension (pg_trgm is a trusted extension since
    # PostgreSQL 13, so a database owner is enough).
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS incident_search_trgm ON incidents_incident "
        "USING gin (search_text gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS incident_search_trgm")


class Migration(migrations.Migration):

    dependencies = [
        ("incidents", "0002_initial"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
