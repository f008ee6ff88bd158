"""Django's Redis cache with one client object per connection pool.

Django's `RedisCacheClient.get_client` wraps the pool in a new `redis.Redis` on every
operation, and that constructor (redis-py builds its table of response callbacks) costs
several times the round trip itself on loopback (~0.4 ms against ~0.08 ms per `get`). A sync
run reads the cache for every token and API call, so the portal keeps one client per pool:
`redis.Redis` is thread-safe (each command borrows a connection from the pool).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    """`django.core.cache.backends.redis.RedisCache`, with `RedisCacheClient` above."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
