"""The summary's maintained counts (incidents/counters.py), counted once from the incidents
already stored; from then on every change moves them."""

from datetime import UTC

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import TruncDate


def count_existing(apps, schema_editor):
    connection = schema_editor.connection
    quote = connection.ops.quote_name
    incidents = apps.get_model("incidents", "Incident").objects.order_by()
    grouped = {
        "incidents_incidentcount": ("tenant_id", "severity", "status"),
        "incidents_incidentdaycount": ("tenant_id", "day", "severity"),
    }
    with connection.cursor() as cursor:
        for table, key in grouped.items():
            rows = incidents.annotate(day=TruncDate("created_time", tzinfo=UTC)) if "day" in key else incidents
            select, params = rows.values_list(*key).annotate(n=Count("*")).query.sql_with_params()
            columns = ", ".join(quote(c) for c in (*key, "n"))
            cursor.execute(f"INSERT INTO {quote(table)} ({columns}) {select}", params)


class Migration(migrations.Migration):

    dependencies = [
        ('incidents', '0009_incident_actions'),
        ('tenants', '0003_sync_lease_token'),
    ]

    operations = [
        migrations.CreateModel(
            name='IncidentCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('severity', models.TextField(blank=True)),
                ('status', models.TextField(blank=True)),
                ('n', models.IntegerField(default=0)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='incident_counts', to='tenants.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'severity', 'status'), name='incidentcount_unique')],
            },
        ),
        migrations.CreateModel(
            name='IncidentDayCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('severity', models.TextField(blank=True)),
                ('n', models.IntegerField(default=0)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='incident_day_counts', to='tenants.tenant')),
            ],
            options={
                'indexes': [models.Index(fields=['day', 'severity'], include=('n',), name='incidentdaycount_day')],
                'constraints': [models.UniqueConstraint(fields=('tenant', 'day', 'severity'), name='incidentdaycount_unique')],
            },
        ),
        migrations.RunPython(count_existing, migrations.RunPython.noop, elidable=True),
    ]
