"""pytest plugin: the real services tests use (Redis here; PostgreSQL through pytest-django).

With REQUIRE_SERVICES=1 (CI) a missing service fails the test, never skips it.

Under pytest-xdist (tests/parallel.py) every worker needs a Redis of its own: tests flush
their database and workers consume the broker's queue. The first worker (gw0) uses REDIS_URL;
each other worker starts a private redis-server, because another Redis database number may
belong to someone else on a shared machine. PostgreSQL needs nothing: pytest-django gives
each worker its own test database (test_<name>_gw0, _gw1…).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
_private_redis: subprocess.Popen | None = None


def service_unavailable(what: str) -> None:
    """Fail in CI, skip on a laptop without the service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


def pytest_configure(config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker != "gw0":
        _use_redis(_start_private_redis())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    # Not pytest_unconfigure: xdist may end the worker process before that runs.
    if _private_redis is not None:
        _private_redis.kill()
        _private_redis.wait()


def _die_with_this_process() -> None:
    """In the child, before exec: SIGKILL when the worker that started it dies (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _start_private_redis() -> str | None:
    """A redis-server on a free port for this worker alone (None: redis-server is missing)."""
    global _private_redis
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", tempfile.gettempdir()]
    try:
        _private_redis = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_this_process,  # safe: no threads run yet
        )
    except FileNotFoundError:
        return None  # the redis_url fixture then fails (CI) or skips the tests that need it
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _private_redis.poll() is None:
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.02)
    client.close()
    return f"redis://127.0.0.1:{port}/0"


def _use_redis(url: str | None) -> None:
    """Point this process (settings read REDIS_URL before any plugin runs) and the processes
    tests start at `url`."""
    global REDIS_URL
    url = url or "redis://127.0.0.1:1/0"  # no redis-server: the fixture reports nothing there
    REDIS_URL = os.environ["REDIS_URL"] = url
    from django.conf import settings

    if settings.REDIS_URL:
        settings.REDIS_URL = settings.CELERY_BROKER_URL = url
        settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"]}}
        settings.CACHES["default"]["LOCATION"] = url


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
