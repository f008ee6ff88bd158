from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def portal(request: HttpRequest) -> dict[str, object]:
    return {"msp_name": settings.MSP_NAME, "sign_in_mode": settings.SIGN_IN_MODE}
