"""A tiny stand-in for Entra's discovery (with `responses`), for parsing-level token tests.

Behaviour against a real Entra-shaped server is tested against devcloud.
"""

from __future__ import annotations

import uuid

import pytest
import responses

BASE = "https://login.example.test"
TENANT = str(uuid.uuid4())
TOKEN_URL = f"{BASE}/{TENANT}/oauth2/v2.0/token"


@pytest.fixture
def fake_login(settings):
    settings.MICROSOFT_LOGIN_BASE_URL = BASE
    settings.MICROSOFT_CLIENT_ID = str(uuid.uuid4())
    settings.MICROSOFT_CLIENT_SECRET = "s3cret-value"
    settings.MICROSOFT_CA_BUNDLE = ""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    from django.core.cache import cache

    cache.clear()  # this process's memory: tokens and discovery documents of earlier tests
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(discovery_url(TENANT), json=DISCOVERY)
        yield mock


def discovery_url(tenant: str) -> str:
    return f"{BASE}/{tenant}/v2.0/.well-known/openid-configuration"


def discovery(tenant: str) -> dict[str, str]:
    return {
        "authorization_endpoint": f"{BASE}/{tenant}/oauth2/v2.0/authorize",
        "token_endpoint": f"{BASE}/{tenant}/oauth2/v2.0/token",
        "issuer": f"{BASE}/{tenant}/v2.0",
    }


DISCOVERY = discovery(TENANT)
