"""IncidentChange.incident without an index of its own: change_once_per_version's
(incident, version) serves every lookup by incident, and the sync writes a change for every
incident it changes. Only the index goes (Django would drop and re-check the foreign key)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("incidents", "0015_drop_summary_count_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "incidents_incidentchange_incident_id_a4d652be"',
                    reverse_sql=(
                        'CREATE INDEX IF NOT EXISTS "incidents_incidentchange_incident_id_a4d652be" '
                        'ON "incidents_incidentchange" ("incident_id")'
                    ),
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="incidentchange",
                    name="incident",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="changes",
                        to="incidents.incident",
                    ),
                )
            ],
        )
    ]
