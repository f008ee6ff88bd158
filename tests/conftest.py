"""Shared fixtures: the cast (alice sees tenant A, bob sees B, charlie sees nothing) and
real services. With REQUIRE_SERVICES=1 (CI) a missing service fails the test, never skips it.
"""

from __future__ import annotations

import os

import pytest

from tests.factories import ConsentedTenantFactory, GroupFactory, UserFactory

pytest_plugins = ["tests.workers", "tests.devcloud_fixture"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def service_unavailable(what: str) -> None:
    """Fail in CI, skip on a laptop without the service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The cast's passwords are hashed per test; PBKDF2 would cost ~0.4 s each time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def exact_dashboard_summary(settings):
    # Tests change incidents between requests: the summary is counted afresh each time
    # (tests/incidents/test_dashboard_summary_cache.py turns the cache on).
    settings.DASHBOARD_SUMMARY_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def audit_every_rejected_callback(settings):
    # The cache outlives a test: with the once-a-minute limit, one test's rejected callback
    # would silence the next test's audit row (tests/consent/test_callback_throttle.py
    # turns the limit on, from addresses of its own).
    settings.CONSENT_REJECTION_AUDIT_SECONDS = 0


@pytest.fixture
def redis_url() -> str:
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


@pytest.fixture
def team_a(db):
    return GroupFactory(name="team-a")


@pytest.fixture
def team_b(db):
    return GroupFactory(name="team-b")


@pytest.fixture
def tenant_a(team_a):
    return ConsentedTenantFactory(display_name="Contoso", groups=[team_a])


@pytest.fixture
def tenant_b(team_b):
    return ConsentedTenantFactory(display_name="Fabrikam", groups=[team_b])


@pytest.fixture
def alice(team_a):
    return UserFactory(username="alice", groups=[team_a])


@pytest.fixture
def bob(team_b):
    return UserFactory(username="bob", groups=[team_b])


@pytest.fixture
def charlie(db):
    return UserFactory(username="charlie")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client
