"""A real Celery worker in a subprocess, on the test database and a real Redis.

Not `task_always_eager` (it hides acks_late and serialization) and not an in-process
thread (tests must be able to SIGKILL a worker mid-task). Run by the demo's supervisor
(partner_portal/demo/supervisor.py), as `manage.py demo` runs its worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from partner_portal.demo.supervisor import Child, Supervisor
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the test database, for processes started by tests."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    user = s.get("USER") or ""
    auth = f"{user}:{s['PASSWORD']}@" if s.get("PASSWORD") else (f"{user}@" if user else "")
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


class WorkerProcess:
    """A worker run by the demo's supervisor (in a process group of its own), its output kept."""

    def __init__(self, child: Child, lines: list[str]) -> None:
        self.child = child
        self.lines = lines  # filled by the supervisor's reader thread

    @property
    def proc(self) -> subprocess.Popen:
        return self.child.proc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output[-3000:]}")
            return any(line.endswith(" ready.") for line in self.lines)

        try:
            wait_until(ready, timeout=timeout, what="the worker to be ready")
        except AssertionError:
            raise TimeoutError(f"worker not ready in {timeout}s:\n{self.output[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL the whole worker (pool children too), as a crashed machine would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def celery_broker(redis_url, settings):
    """Point this process's Celery app and cache at the test Redis, as the worker is."""
    from partner_portal.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = redis_url
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    settings.CACHES = {
        "default": {"BACKEND": "partner_portal.redis_cache.RedisCache", "LOCATION": redis_url}
    }
    _drop_connections(app)
    yield redis_url
    app.conf.broker_url = old
    _drop_connections(app)


def _drop_connections(app) -> None:
    """Forget the pools bound to the previous broker URL. Not app.close(): that also
    deregisters the app, and shared tasks imported afterwards would never register. Not
    force_close_all(): kombu keeps pools per URL globally and a closed one stays closed."""
    app._after_fork()


@pytest.fixture
def start_worker(celery_broker, transactional_db, settings):
    """Start real workers: `start_worker(concurrency=2, env={...}, queues="")` →
    WorkerProcess (ready)."""
    workers: list[WorkerProcess] = []
    processes = Supervisor(None, cwd=ROOT, stop_timeout=20)

    def start(
        *, concurrency: int = 2, pool: str = "threads", env: dict | None = None, queues: str = ""
    ):
        child_env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": celery_broker,
            "DJANGO_SETTINGS_MODULE": "partner_portal.settings",
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in _microsoft_env(settings).items()},
            **(env or {}),
        }
        name = f"test{len(workers)}"
        cmd = [sys.executable, "-m", "celery", "-A", "partner_portal", "worker"]
        cmd += ["--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO"]
        cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
        cmd += ["--hostname", f"{name}@%h"]
        if queues:  # only these (comma-separated), instead of the default queue
            cmd += ["--queues", queues]
        lines: list[str] = []
        child = processes.start(name, cmd, env=child_env, on_line=lines.append)
        worker = WorkerProcess(child, lines)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    # The test is over and nothing a worker does now is checked: SIGKILL spares each one a
    # warm shutdown (waiting for its tasks, closing its pool), seconds on a busy machine.
    for worker in workers:
        worker.kill()
    processes.stop_all()


def _microsoft_env(settings) -> dict[str, object]:
    """The Microsoft settings of this test, passed on to worker processes."""
    names = [
        "MICROSOFT_CLIENT_ID",
        "MICROSOFT_CLIENT_SECRET",
        "MICROSOFT_LOGIN_BASE_URL",
        "MICROSOFT_DEFENDER_BASE_URL",
        "MICROSOFT_GRAPH_BASE_URL",
        "MICROSOFT_DEFAULT_SOURCE",
        "GRAPH_CALLS_PER_MINUTE",
        "GRAPH_CALLS_PER_HOUR",
        "MICROSOFT_CA_BUNDLE",
        "MICROSOFT_CERTIFICATE_PATH",
        "MICROSOFT_PRIVATE_KEY_PATH",
        "PUBLIC_BASE_URL",
        "TOKEN_CACHE_KEY",
        "SYNC_OVERLAP_MINUTES",
        "DEFENDER_CALLS_PER_MINUTE",
        "DEFENDER_CALLS_PER_HOUR",
        "MICROSOFT_HTTP_TIMEOUT",
    ]
    return {n: getattr(settings, n) for n in names if getattr(settings, n, "") not in ("", None)}
