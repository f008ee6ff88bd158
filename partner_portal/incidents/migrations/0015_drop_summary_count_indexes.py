"""Two indexes the summary counted with until it read maintained counts (0010): nothing
reads them now (no scan of either in bench/dashboard.py's whole run), and every incident
the sync writes paid for both."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("incidents", "0014_search_keys_inside_words")]

    operations = [
        migrations.RemoveIndex(model_name="incident", name="incident_open_tenant_sev"),
        migrations.RemoveIndex(model_name="incident", name="incident_created_sev"),
    ]
