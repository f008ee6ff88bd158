"""The benchmarks refuse a database that another branch migrated (bench/schema.py)."""

from __future__ import annotations

import pytest
from django.db.migrations.recorder import MigrationRecorder

from bench import schema


def test_a_database_with_a_migration_this_code_lacks_is_refused(db):
    schema.migrate()  # up to date: nothing to say
    MigrationRecorder.Migration.objects.create(app="incidents", name="9999_other_branch")
    with pytest.raises(SystemExit, match=r"incidents\.9999_other_branch"):
        schema.migrate()
