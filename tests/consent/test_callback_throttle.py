"""L4: rejected callbacks are counted per source address; one audit row a minute each."""

from __future__ import annotations

import uuid

from django.core.cache import cache

from partner_portal.audit.models import AuditEvent


def _address() -> str:
    # An address of this test only: the cache (Redis) outlives tests.
    n = uuid.uuid4().int
    return f"198.51.{n % 250}.{(n >> 8) % 250 + 1}"


def rejected_rows(address: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="consent.callback_rejected", ip_address=address))


def test_a_flood_of_forged_callbacks_writes_one_audit_row_a_minute_per_address(
    client, db, settings
):
    settings.CONSENT_REJECTION_AUDIT_SECONDS = 60
    attacker, other = _address(), _address()
    for _ in range(50):
        response = client.get(
            "/consent/callback/", {"state": "forged", "tenant": "x"}, REMOTE_ADDR=attacker
        )
        assert response.status_code == 400  # every one is still refused
    assert len(rejected_rows(attacker)) == 1
    # Another address is counted and audited on its own.
    client.get("/consent/callback/", {"state": "forged"}, REMOTE_ADDR=other)
    assert len(rejected_rows(other)) == 1

    # The minute is a cache entry that expires (in Redis, on Redis's clock): its lifetime
    # is the setting, and once it is gone the next rejection is audited again.
    mark = f"consent:rejected-audited:{attacker}"
    assert cache.get(mark) is not None
    if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):
        redis = cache._cache.get_client(cache.make_and_validate_key(mark))
        assert 0 < redis.ttl(cache.make_and_validate_key(mark)) <= 60
    cache.delete(mark)
    client.get("/consent/callback/", {"state": "forged"}, REMOTE_ADDR=attacker)
    rows = rejected_rows(attacker)
    assert len(rows) == 2
    # The second row says how many were rejected since the first: 49 silent + this one.
    assert sorted(row.data["rejected_since_last_audit"] for row in rows) == [1, 50]
