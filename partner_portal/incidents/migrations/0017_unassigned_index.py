"""The "Needs attention" view's count (open, High, unassigned), shown on every list page,
from an index of the unassigned incidents alone: incident_tenant_sev found the open High
incidents but left a row read per match to check its assignee (~7 ms a page at 1M incidents
for staff who see 50 tenants). A plain CREATE INDEX: it holds only the unassigned incidents
and builds in seconds at 1M rows (the sync's writes wait for it, reads don't)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0016_change_incident_index"),
        ("tenants", "0003_sync_lease_token"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="incident",
            index=models.Index(
                condition=models.Q(("assigned_to", "")),
                fields=["severity", "status", "tenant"],
                name="incident_unassigned_sev",
            ),
        ),
    ]
