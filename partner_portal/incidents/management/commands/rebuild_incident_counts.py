"""`python manage.py rebuild_incident_counts [--tenant PK …]`: count the summary's numbers
afresh from the incidents (incidents/counters.py keeps them exact as incidents change; this
is for a database restored from a backup or edited by hand)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from partner_portal.incidents import counters


class Command(BaseCommand):
    help = "Count the summary's incident counts afresh from the incidents."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--tenant",
            action="append",
            type=int,
            metavar="PK",
            help="Only this tenant (repeatable).",
        )

    def handle(self, *args: Any, tenant: list[int] | None, **options: Any) -> None:
        started = time.monotonic()
        rows = counters.rebuild(tenant)
        self.stdout.write(f"Counted afresh: {rows} rows in {time.monotonic() - started:.1f} s.")
