"""`expected_tenant` becomes `expected_tenant_id`: it holds an Entra tenant ID (a GUID), like
`returned_tenant_id` beside it (issue 9: one name per thing). A column rename on PostgreSQL
and SQLite alike; the values stay."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0004_token_hash"),
    ]

    operations = [
        migrations.RenameField(
            model_name="consentlink", old_name="expected_tenant", new_name="expected_tenant_id"
        ),
    ]
