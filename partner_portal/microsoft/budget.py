"""The call budget per (API, tenant, app), shared by every worker through the cache.

The Defender API allows 50 calls a minute and 1,500 an hour per tenant and app; Graph's
security API has its own limits (GRAPH_CALLS_PER_*, §7.8), counted apart. Both count over a
*sliding* window. Plain per-minute buckets would let 2 × 50 calls through around a minute
boundary, so each period is cut into 12 small buckets and a call is allowed only while the
calls of the last 14 buckets (a little more than the period: clocks and network delays
differ between us and Microsoft) stay within the limit. Counters are `cache.add` +
`cache.incr`, atomic on Redis; a refused call hands its unit back.

Reference: https://learn.microsoft.com/en-us/defender-xdr/api-list-incidents (limits),
https://learn.microsoft.com/en-us/graph/throttling-limits (Graph)
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from partner_portal.microsoft.errors import Throttled

SLICES = 12  # buckets per period
SPAN = 14  # buckets summed: the period plus 2 buckets of margin


@dataclass(frozen=True)
class Period:
    name: str
    seconds: int
    limit: int

    @property
    def bucket_seconds(self) -> float:
        return self.seconds / SLICES


def periods(api: str = "defender") -> list[Period]:
    if api == "graph":
        return [
            Period("minute", 60, settings.GRAPH_CALLS_PER_MINUTE),
            Period("hour", 3600, settings.GRAPH_CALLS_PER_HOUR),
        ]
    return [
        Period("minute", 60, settings.DEFENDER_CALLS_PER_MINUTE),
        Period("hour", 3600, settings.DEFENDER_CALLS_PER_HOUR),
    ]


def _key(tenant_id: str, app_id: str, period: Period, bucket: int, api: str = "defender") -> str:
    return f"{api}-budget:{tenant_id}:{app_id}:{period.name}:{bucket}"


def take(
    *,
    tenant_id: str,
    app_id: str,
    now: float | None = None,
    api: str = "defender",
    reserve: int = 0,
) -> None:
    """Take one call from the budget, or raise Throttled(retry_after=seconds until the
    oldest counted bucket leaves the window).

    `reserve` calls of each period are left to others: incident actions pass one so that a
    bulk action never takes the calls the tenant's sync needs."""
    now = time.time() if now is None else now
    taken: list[str] = []
    for period in periods(api):
        current = int(now // period.bucket_seconds)
        key = _key(tenant_id, app_id, period, current, api)
        # add() creates the bucket once; incr() is atomic whoever gets there first.
        cache.add(key, 0, timeout=int(period.seconds * 2))
        try:
            cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.add(key, 1, timeout=int(period.seconds * 2))
        taken.append(key)
        buckets = range(current - SPAN + 1, current + 1)
        names = [_key(tenant_id, app_id, period, b, api) for b in buckets]
        counts = cache.get_many(names)
        values = [int(counts.get(name) or 0) for name in names]
        if sum(values) > period.limit - (reserve if period.limit > reserve else 0):
            _give_back(taken)
            oldest = next(b for b, v in zip(buckets, values, strict=True) if v)
            leaves_at = (oldest + SPAN) * period.bucket_seconds
            retry_after = max(1, math.ceil(leaves_at - now))
            raise Throttled(
                f"Call budget of {period.limit} per {period.name} used up for this tenant",
                retry_after=retry_after,
                code="budget",
            )


def _give_back(keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(ValueError):
            cache.decr(key)
