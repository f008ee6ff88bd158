"""The big JSON and text columns of incidents and alerts compressed with lz4 where the
server has it (PostgreSQL 14+ built with lz4): about a fifth of the server's time storing a
page went to pglz. A column setting instead of a setting per page's transaction (one
statement less per page); existing rows keep their compression until rewritten."""

from django.db import migrations

COLUMNS = {
    "incidents_incident": ("raw", "search_text", "comments"),
    "incidents_alert": ("description", "devices", "entities", "raw"),
}


def _set(schema_editor, method: str) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
        if not (row and row[0]):
            return
        quote = connection.ops.quote_name
        for table, columns in COLUMNS.items():
            for column in columns:
                cursor.execute(
                    f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} "
                    f"SET COMPRESSION {method}"
                )


def lz4(apps, schema_editor):
    _set(schema_editor, "lz4")


def default(apps, schema_editor):
    _set(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("incidents", "0011_search_per_tenant")]

    operations = [migrations.RunPython(lz4, default, elidable=False)]
