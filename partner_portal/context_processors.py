from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def portal(request: HttpRequest) -> dict[str, object]:
    # The lockout page (rendered by django-axes with this context) says how long it lasts.
    return {
        "msp_name": settings.MSP_NAME,
        "cooloff_minutes": settings.LOGIN_COOLOFF_MINUTES,
        "sign_in_mode": settings.SIGN_IN_MODE,
    }
