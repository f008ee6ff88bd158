"""Store consent link tokens as a SHA-256 hash (issue 12): the column is renamed and each
existing token replaced by its hash, so links already sent keep working."""

import hashlib

from django.db import migrations, models

import partner_portal.consent.models


def hash_tokens(apps, schema_editor):
    ConsentLink = apps.get_model("consent", "ConsentLink")
    for link in ConsentLink.objects.only("pk", "token_hash").iterator():
        hashed = hashlib.sha256(link.token_hash.encode()).hexdigest()
        ConsentLink.objects.filter(pk=link.pk).update(token_hash=hashed)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0003_link_binding"),
    ]

    operations = [
        migrations.RenameField(model_name="consentlink", old_name="token", new_name="token_hash"),
        # Tokens are 43 characters, hashes 64: the column is wide enough for both.
        migrations.RunPython(hash_tokens, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="consentlink",
            name="token_hash",
            field=models.CharField(
                default=partner_portal.consent.models.new_token_hash,
                editable=False,
                max_length=64,
                unique=True,
            ),
        ),
    ]
