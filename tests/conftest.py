"""Shared fixtures: the cast (alice sees tenant A, bob sees B, charlie sees nothing), the
portal pointed at devcloud, and the plugins below. No test imports from a conftest file:
importable helpers live in named modules (tests/waiting.py, tests/chromium.py, …).
"""

from __future__ import annotations

import pytest

from partner_portal.microsoft import tokens
from tests.factories import ConsentedTenantFactory, GroupFactory, UserFactory

pytest_plugins = [
    "tests.parallel",  # `-n auto`: the whole suite on two processes, a selection on one
    "tests.services",  # redis_url; a missing service fails in CI, skips on a laptop
    "tests.database",  # transactional tests end with DELETE, not a slow TRUNCATE
    "tests.devcloud_fixture",  # devcloud_server, devcloud, devcloud_settings, http
    "tests.workers",  # celery_broker, start_worker: real Celery workers
    "tests.chromium",  # browser, page, artifacts_dir
    "tests.microsoft.fake_entra",  # fake_login: Entra discovery stubbed with `responses`
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The cast's passwords are hashed per test; PBKDF2 would cost ~0.4 s each time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def exact_dashboard_summary(settings):
    # Tests change incidents between requests: the summary is counted afresh each time
    # (tests/incidents/test_summary.py turns the cache on).
    settings.DASHBOARD_SUMMARY_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def audit_every_rejected_callback(settings):
    # The cache outlives a test: with the once-a-minute limit, one test's rejected callback
    # would silence the next test's audit row (tests/consent/test_callback_throttle.py
    # turns the limit on, from addresses of its own).
    settings.CONSENT_REJECTION_AUDIT_SECONDS = 0


@pytest.fixture(autouse=True)
def fresh_msal_apps():
    """Each test starts without this process's MSAL apps (they cache discovery and errors)."""
    tokens.forget_all()
    yield
    tokens.forget_all()


@pytest.fixture
def portal(devcloud_settings, redis_url, settings):
    """The portal pointed at devcloud, its token cache in Redis (shared by every process)."""
    settings.CACHES = {
        "default": {"BACKEND": "partner_portal.redis_cache.RedisCache", "LOCATION": redis_url}
    }
    return devcloud_settings


@pytest.fixture
def enqueued(monkeypatch):
    """The "Sync now" tasks the views send, recorded instead of sent (no broker needed)."""
    from partner_portal.incidents import tasks

    calls = []
    monkeypatch.setattr(tasks.sync_tenant, "delay_on_commit", lambda **kw: calls.append(kw))
    return calls


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
