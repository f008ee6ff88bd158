"""pytest plugin: the real services tests use (Redis here; PostgreSQL through pytest-django).

With REQUIRE_SERVICES=1 (CI) a missing service fails the test, never skips it.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def service_unavailable(what: str) -> None:
    """Fail in CI, skip on a laptop without the service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


@pytest.fixture
def redis_url() -> str:
    """An empty Redis database (flushed before and after the test)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis at {REDIS_URL} ({exc})")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()
