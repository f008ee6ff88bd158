"""The per-(tenant, app) call budget: a sliding window kept in the shared cache."""

from __future__ import annotations

import pytest

from partner_portal.microsoft import budget
from partner_portal.microsoft.errors import Throttled


@pytest.fixture(autouse=True, params=["redis", "locmem"])
def backend(request, settings):
    """Every rule holds on Redis (one script) and on any other cache (add + incr)."""
    from django.core.cache import cache

    if request.param == "redis":
        location = request.getfixturevalue("redis_url")
        settings.CACHES = {
            "default": {"BACKEND": "partner_portal.redis_cache.RedisCache", "LOCATION": location}
        }
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DEFENDER_CALLS_PER_MINUTE = 5
    settings.DEFENDER_CALLS_PER_HOUR = 100
    cache.clear()
    yield request.param
    cache.clear()


def take(now: float, tenant: str = "t1") -> None:
    budget.take(tenant_id=tenant, app_id="app", now=now)


def test_calls_within_the_limit_pass_and_the_next_one_is_throttled():
    start = 1_000_020.0  # the start of a 5-second bucket
    for n in range(5):
        take(start + n)
    with pytest.raises(Throttled) as info:
        take(start + 5)
    # The first bucket leaves the window after 14 buckets of 5 s (70 s, more than a minute).
    assert info.value.retry_after == 70 - 5
    assert info.value.code == "budget"


def test_a_refused_call_gives_its_unit_back():
    start = 1_000_020.0
    for n in range(5):
        take(start + n)
    for _ in range(3):
        with pytest.raises(Throttled):
            take(start + 10)
    # Once the first calls left the window, the refused ones did not count: 5 pass again.
    for _ in range(5):
        take(start + 71)
    with pytest.raises(Throttled):
        take(start + 71)


def test_the_window_slides_it_does_not_reset_at_the_minute():
    # 5 calls at 0:55; a fixed per-minute counter would allow 5 more at 1:00.
    start = 1_000_020.0 + 55
    for _ in range(5):
        take(start)
    with pytest.raises(Throttled):
        take(start + 5)


def test_the_hourly_limit_counts_too(settings):
    settings.DEFENDER_CALLS_PER_HOUR = 8
    start = 1_000_020.0
    for n in range(8):
        take(start + n * 80)  # spread out: never 5 in a minute
    with pytest.raises(Throttled) as info:
        take(start + 8 * 80)
    assert info.value.retry_after > 60  # waits for the hour window


def test_tenants_have_separate_budgets():
    start = 1_000_020.0
    for _ in range(5):
        take(start, tenant="a")
    take(start, tenant="b")
    with pytest.raises(Throttled):
        take(start, tenant="a")


def test_the_reserve_is_left_to_others(backend):
    start = 1_000_020.0
    for _ in range(4):
        budget.take(tenant_id="t1", app_id="app", now=start, reserve=1)
    with pytest.raises(Throttled):
        budget.take(tenant_id="t1", app_id="app", now=start, reserve=1)
    take(start)  # the sync's own call still fits


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_on_redis_a_call_costs_one_round_trip(monkeypatch):
    import redis

    take(1_000_020.0)  # the first call may also load the script into Redis
    answers = []
    read = redis.connection.AbstractConnection.read_response

    def counted(self, *args, **kwargs):
        answers.append(self)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", counted)
    for n in range(1, 5):
        take(1_000_020.0 + n)
    with pytest.raises(Throttled):
        take(1_000_025.0)
    assert len(answers) == 5  # 4 calls taken and one refused: one answer each
