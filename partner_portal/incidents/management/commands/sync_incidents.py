"""`python manage.py sync_incidents [--tenant ID_OR_NAME …] [--full]`: the sync task's twin.

Runs the same function as the Celery task, in this process, one tenant after another,
with a progress line per tenant. When the sync asks to be retried later (RetryLater), the
command sleeps the countdown and resumes where it stopped: a command may sleep, a worker
never does.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from partner_portal.incidents import sync
from partner_portal.incidents.models import SyncRun
from partner_portal.microsoft import errors
from partner_portal.microsoft.errors import RetryLater
from partner_portal.tenants.models import Tenant


class Command(BaseCommand):
    help = "Sync Microsoft 365 Defender incidents now (all due tenants, or the ones named)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--tenant",
            action="append",
            default=[],
            metavar="ID_OR_NAME",
            help="Portal id, Entra tenant ID, display name or domain (repeatable).",
        )
        parser.add_argument("--full", action="store_true", help="Ignore the watermark.")

    def handle(self, *args: Any, tenant: list[str], full: bool, **options: Any) -> None:
        tenants = [find_tenant(name) for name in tenant] if tenant else due_tenants()
        if not tenants:
            self.stdout.write("No tenant to sync (none enabled and consented).")
            return
        failed = 0
        for item in tenants:
            run = self.sync_one(item, full=full)
            failed += run.outcome != "success"
        if failed:
            raise CommandError(f"{failed} of {len(tenants)} tenant(s) did not sync.")

    def sync_one(self, tenant: Tenant, *, full: bool) -> SyncRun:
        live = self.stdout.isatty()  # an updating line on a terminal, else every 10 pages

        def progress(run: SyncRun) -> None:
            line = (
                f"{tenant}: page {run.pages}, {run.created_count} new, {run.updated_count} updated"
            )
            if live:
                self.stdout.write("\r" + line, ending="")
                self.stdout.flush()
            elif run.pages % 10 == 0:
                self.stdout.write(line)

        resume: dict[str, Any] | None = None
        while True:
            try:
                run = sync.sync_tenant(tenant=tenant, full=full, resume=resume, progress=progress)
                break
            except RetryLater as later:
                # The sync's own retry policy; a command may sleep where a worker never does.
                wait, resume = later.countdown, later.cursor
                self.stdout.write(
                    ("\n" if live else "") + f"{tenant}: {later.cause}; again in {wait:.0f}s"
                )
                time.sleep(wait)
        if live:
            self.stdout.write("")
        duration = run.duration.total_seconds() if run.duration else 0
        summary = (
            f"{tenant}: {run.get_outcome_display()} — {run.pages} pages, {run.api_calls} API "
            f"calls, {run.created_count} new, {run.updated_count} updated, {duration:.1f}s"
        )
        if run.error_class:
            summary += f" — {run.error_class}: {run.error_message}"
            fix = errors.describe(run.error_class).fix
            summary += f"\n  Fix: {fix}"
        style = self.style.SUCCESS if run.outcome == "success" else self.style.WARNING
        self.stdout.write(style(summary))
        return run


def due_tenants() -> list[Tenant]:
    return list(Tenant.objects.filter(pk__in=sync.sync_due_tenants()).order_by("pk"))


def find_tenant(name: str) -> Tenant:
    query = Q(display_name__iexact=name) | Q(primary_domain__iexact=name)
    if name.isdigit():
        query |= Q(pk=int(name))
    with contextlib.suppress(ValueError):
        query |= Q(entra_tenant_id=uuid.UUID(name))
    matches = list(Tenant.objects.filter(query)[:2])
    if len(matches) != 1:
        raise CommandError(f"{'No' if not matches else 'More than one'} tenant matches {name!r}.")
    return matches[0]
