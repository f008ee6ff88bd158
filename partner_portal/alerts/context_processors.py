from __future__ import annotations

from django.http import HttpRequest

from partner_portal.alerts.access import visible_channels


def failing_channels(request: HttpRequest) -> dict[str, object]:
    """The banner's channels that gave up on a delivery and have not got one through since
    (lazy: no query on pages that don't render the banner)."""
    user = getattr(request, "user", None)

    def failing() -> list:
        return list(visible_channels(user).filter(failing_since__isnull=False)[:5])

    return {"failing_channels": failing}
