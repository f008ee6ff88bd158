"""The call budget per (API, tenant, app), shared by every worker through the cache.

The Defender API allows 50 calls a minute and 1,500 an hour per tenant and app; Graph's
security API has its own limits (GRAPH_CALLS_PER_*, §7.8), counted apart. Both count over a
*sliding* window. Plain per-minute buckets would let 2 × 50 calls through around a minute
boundary, so each period is cut into 12 small buckets and a call is allowed only while the
calls of the last 14 buckets (a little more than the period: clocks and network delays
differ between us and Microsoft) stay within the limit. On Redis one Lua script checks and
takes a call in one round trip (every API call passes here); on another cache (the demo's
database cache) counters are `cache.add` + `cache.incr` and a refused call hands its unit
back.

Reference: https://learn.microsoft.com/en-us/defender-xdr/api-list-incidents (limits),
https://learn.microsoft.com/en-us/graph/throttling-limits (Graph)
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script

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
    bulk action never takes the calls the tenant's sync needs.

    On Redis it is one round trip (a script: the check and the take are one atomic step);
    on any other cache, `cache.add` + `cache.incr` per period and a read of the window."""
    now = time.time() if now is None else now
    windows = []
    for period in periods(api):
        current = int(now // period.bucket_seconds)
        buckets = range(current - SPAN + 1, current + 1)
        limit = period.limit - (reserve if period.limit > reserve else 0)
        windows.append((period, buckets, limit))
    client = _redis_client()
    if client is None:
        refused = _take_with_cache(tenant_id, app_id, api, windows)
    else:
        refused = _take_on_redis(client, tenant_id, app_id, api, windows)
    if refused is not None:
        period, buckets, values = refused
        # The oldest bucket that counts (ours, if nothing else does) leaves the window first.
        oldest = next((b for b, v in zip(buckets, values, strict=True) if v), buckets[-1])
        leaves_at = (oldest + SPAN) * period.bucket_seconds
        retry_after = max(1, math.ceil(leaves_at - now))
        raise Throttled(
            f"Call budget of {period.limit} per {period.name} used up for this tenant",
            retry_after=retry_after,
            code="budget",
        )


Window = tuple[Period, range, int]  # the period, its buckets (oldest first), the limit left
Refusal = tuple[Period, range, list[int]]  # the period, its buckets, their counts with ours


def _take_with_cache(
    tenant_id: str, app_id: str, api: str, windows: list[Window]
) -> Refusal | None:
    taken: list[str] = []
    for period, buckets, limit in windows:
        key = _key(tenant_id, app_id, period, buckets[-1], api)
        # add() creates the bucket once; incr() is atomic whoever gets there first.
        cache.add(key, 0, timeout=int(period.seconds * 2))
        try:
            cache.incr(key)
        except ValueError:  # evicted between add and incr
            cache.add(key, 1, timeout=int(period.seconds * 2))
        taken.append(key)
        names = [_key(tenant_id, app_id, period, b, api) for b in buckets]
        counts = cache.get_many(names)
        values = [int(counts.get(name) or 0) for name in names]
        if sum(values) > limit:
            _give_back(taken)
            return period, buckets, values
    return None


# KEYS: the buckets of each period, oldest first, one period after the other.
# ARGV: the number of periods, then per period the limit left to this call and the TTL of a
# new bucket. Takes the call (each period's newest bucket + 1) only if every period has room;
# else returns the 1-based number of the period without room, then its bucket counts.
_TAKE_SCRIPT = """
local periods = tonumber(ARGV[1])
local span = #KEYS / periods
for p = 0, periods - 1 do
  local counts = redis.call('MGET', unpack(KEYS, p * span + 1, (p + 1) * span))
  local total = 0
  for i = 1, span do
    counts[i] = tonumber(counts[i]) or 0
    total = total + counts[i]
  end
  if total + 1 > tonumber(ARGV[2 + 2 * p]) then
    table.insert(counts, 1, p + 1)
    return counts
  end
end
for p = 1, periods do
  local key = KEYS[p * span]
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, tonumber(ARGV[1 + 2 * p]))
  end
end
return 0
"""
# EVALSHA (the script's hash), the script itself only when the server lacks it (after a
# restart): one round trip per call.
_TAKE = Script(None, _TAKE_SCRIPT.encode())  # type: ignore[arg-type]


def _take_on_redis(
    client: Any, tenant_id: str, app_id: str, api: str, windows: list[Window]
) -> Refusal | None:
    backend = caches["default"]
    keys: list[str] = []
    args: list[int] = [len(windows)]
    for period, buckets, limit in windows:
        keys += [backend.make_key(_key(tenant_id, app_id, period, b, api)) for b in buckets]
        args += [limit, int(period.seconds * 2)]
    answer = _TAKE(keys=keys, args=args, client=client)
    if not answer:
        return None
    period, buckets, _ = windows[int(answer[0]) - 1]
    values = [int(v) for v in answer[1:]]
    values[-1] += 1  # as if taken, like the other path's count
    return period, buckets, values


def _redis_client() -> Any:
    """The cache's Redis client when the cache is Redis (production), else None."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return cast(Any, backend)._cache.get_client(write=True)  # Django's, not in the stubs
    return None


def _give_back(keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(ValueError):
            cache.decr(key)
