"""Times in each staff member's own time zone (Preference.time_zone, else UTC).

The zone is read from the database once per session and kept in the session.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

SESSION_KEY = "time_zone"


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


def time_zone_middleware(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        zone = None
        if user is not None and user.is_authenticated:
            name = request.session.get(SESSION_KEY)
            if name is None:
                from partner_portal.incidents.models import Preference

                name = (
                    Preference.objects.filter(user=user).values_list("time_zone", flat=True).first()
                    or ""
                )
                request.session[SESSION_KEY] = name
            zone = _zone(name)
            # Templates ask whether the browser should send its zone (static/js/time-zone.js).
            request.time_zone_known = bool(name)  # type: ignore[attr-defined]
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return get_response(request)
        finally:
            timezone.deactivate()

    return middleware
