"""The benchmarks' database: migrated to this code, and refused when another branch's
migrations are applied to it (this code would write columns the tables no longer have, and
every page would fall back to storing item by item: figures of a broken run, not an error)."""

from __future__ import annotations

import sys


def migrate() -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    call_command("migrate", verbosity=0)
    loader = MigrationLoader(connection)
    unknown = sorted(set(loader.applied_migrations) - set(loader.disk_migrations))
    if unknown:
        names = ", ".join(f"{app}.{name}" for app, name in unknown)
        sys.exit(
            f"The database has migrations this code does not have ({names}): another branch "
            "migrated it. Migrate it back from that branch (manage.py migrate <app> <name>) "
            "or use another database."
        )
