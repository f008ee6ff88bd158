from __future__ import annotations

from django.db import connection
from django.http import HttpRequest

from partner_portal.alerts.access import visible_channels
from partner_portal.alerts.models import Channel


def failing_channels(request: HttpRequest) -> dict[str, object]:
    """The banner's channels that gave up on a delivery and have not got one through since
    (lazy: no query on pages that don't render the banner)."""
    user = getattr(request, "user", None)

    def failing() -> list:
        # Usually no channel fails at all, which one plain statement tells: building the
        # access rule's query cost ~2 M instructions, 4% of an incident list page.
        if not _any_failing():
            return []
        return list(visible_channels(user).filter(failing_since__isnull=False)[:5])

    return {"failing_channels": failing}


def _any_failing() -> bool:
    table = connection.ops.quote_name(Channel._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE failing_since IS NOT NULL LIMIT 1")  # noqa: S608
        return cursor.fetchone() is not None
