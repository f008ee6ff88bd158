"""An incident's search words in a table of their own (models.IncidentSearch).

On the incident's row, the two trigram indexes (0003's, for everyone's search, and 0014's,
per tenant) took ~180 entries an incident, written again with every new row version: every
change at Microsoft, although most leave the words as they were. At 1,000 tenants × 20
changed incidents a cycle, that was two thirds of the sync's write-ahead log. Here a row is
written when its words change.

The words are copied over and the indexes built on the new table (after the copy: one
build instead of a million inserts) under names of their own; only then are the old ones
dropped, the new ones given their names and the column dropped, so that the incident table
is locked exclusively for moments, not for the builds.
"""

import django.db.models.deletion
from django.db import migrations, models

SEARCH = "incidents_incidentsearch"
INCIDENT = "incidents_incident"


def _trgm_schema(schema_editor) -> str:
    # pg_trgm's schema: an index expression must not depend on the search path.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'show_trgm'"
        )
        return schema_editor.connection.ops.quote_name(cursor.fetchone()[0])


INDEXES = ("incident_search_trgm", "incident_search_tenant_words")


def _move_indexes(schema_editor, table: str, column: str) -> None:
    """Build both indexes on `table`, then put them in place of those of the same names."""
    schema = _trgm_schema(schema_editor)
    trgm, words = (f"{name}_building" for name in INDEXES)
    schema_editor.execute(
        f"CREATE INDEX {trgm} ON {table} USING gin ({column} {schema}.gin_trgm_ops)"
    )
    # fastupdate off: see 0014.
    schema_editor.execute(
        f"CREATE INDEX {words} ON {table} "
        f"USING gin (incident_search_word_keys(tenant_id, {column})) WITH (fastupdate = off)"
    )
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
        schema_editor.execute(f"ALTER INDEX {name}_building RENAME TO {name}")


def forwards(apps, schema_editor):
    schema_editor.execute(
        f"INSERT INTO {SEARCH} (incident_id, tenant_id, text) "  # noqa: S608 (names only)
        f"SELECT id, tenant_id, search_text FROM {INCIDENT}"
    )
    if schema_editor.connection.vendor == "postgresql":
        _move_indexes(schema_editor, SEARCH, "text")


def backwards(apps, schema_editor):
    schema_editor.execute(
        f"UPDATE {INCIDENT} SET search_text = s.text FROM {SEARCH} s "  # noqa: S608
        f"WHERE s.incident_id = {INCIDENT}.id"
    )
    if schema_editor.connection.vendor == "postgresql":
        _move_indexes(schema_editor, INCIDENT, "search_text")


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0017_unassigned_and_assignee_indexes"),
        ("tenants", "0003_sync_lease_token"),
    ]

    operations = [
        migrations.CreateModel(
            name="IncidentSearch",
            fields=[
                (
                    "incident",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search",
                        serialize=False,
                        to="incidents.incident",
                    ),
                ),
                ("text", models.TextField(blank=True)),
                (
                    "tenant",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
            ],
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
        migrations.RemoveField(model_name="incident", name="search_text"),
    ]
