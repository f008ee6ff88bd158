"""A fleet of bench tenants for the fan-out and freshness benchmarks: its own devcloud, its
own tenants in the database (a name prefix per benchmark, removed before and after), Redis
workers started as production runs them, and the figures both benchmarks read (worker CPU,
devcloud's request log, finished runs).

The Redis database in REDIS_URL is the broker and the cache of the bench's workers: it is
FLUSHED at the start and at the end. PostgreSQL when DATABASE_URL is set, else a throwaway
SQLite file under var/.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import schema  # noqa: E402
from devcloud import launcher  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Fleet:
    """What a benchmark works with once `fleet()` set it up."""

    devcloud: Any  # devcloud.client.DevCloud
    devcloud_pid: int
    tenant_pks: list[int]
    entra_ids: dict[int, str]  # tenant pk → its Entra tenant ID in devcloud
    env: dict[str, str]
    workers: list[dict] = field(default_factory=list)

    def worker_cpu_seconds(self) -> float:
        """User + system CPU of the worker processes (and their pool children) so far."""
        return sum(cpu_seconds(w["proc"].pid) for w in self.workers)

    def devcloud_cpu_seconds(self) -> float:
        return cpu_seconds(self.devcloud_pid)

    def database_backends(self) -> dict[int, float]:
        """CPU so far of each PostgreSQL backend connected to this database (but ours); {}
        on SQLite."""
        from django.db import connection

        if connection.vendor != "postgresql":
            return {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            return {pid: cpu_seconds(pid) for (pid,) in cursor.fetchall()}

    def worker_rss_mib(self) -> float:
        return max(rss_kib(w["proc"].pid) for w in self.workers) / 1024

    def requests(self) -> dict[str, int]:
        """devcloud's request counts by endpoint since the last `clear_requests`."""
        return dict(self.devcloud.requests_log(entries=False)["by_endpoint"])

    def fan_out(self) -> None:
        """Queue one sync of every bench tenant, as the scheduler's `sync_all_tenants` does
        (the same function), for these tenants only."""
        from partner_portal.incidents import tasks

        if hasattr(tasks, "fan_out"):
            tasks.fan_out(self.tenant_pks)
        else:  # the code before issue 18, for a comparison on the same machine
            for pk in self.tenant_pks:
                tasks.sync_tenant.delay(tenant_pk=pk)

    def wait_for_runs(self, since: datetime, *, timeout: float) -> dict[str, Any]:
        """Wait until every bench tenant has a finished SyncRun started at or after `since`;
        returns outcome counts and when the last one finished."""
        from django.db.models import Count, Max

        from partner_portal.incidents.models import SyncRun
        from partner_portal.incidents.sync import UNFINISHED

        deadline = time.monotonic() + timeout
        runs = SyncRun.objects.filter(tenant_id__in=self.tenant_pks, started_at__gte=since)
        backends: dict[int, tuple[float, float]] = {}  # pid → (CPU first seen, last seen)
        while True:
            for pid, cpu in self.database_backends().items():
                first = backends.get(pid, (0.0 if backends else cpu, cpu))[0]
                backends[pid] = (first, cpu)
            done = runs.exclude(outcome__in=UNFINISHED)
            if done.values("tenant_id").distinct().count() >= len(self.tenant_pks):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{done.count()} of {len(self.tenant_pks)} runs finished in {timeout:.0f} s"
                )
            # The cycle's end is its last run's finished_at, not when this loop sees it: a
            # poll a second is as exact, and spares the cycle's 2 cores the poll's cost
            # (a 1,000-id query and its plan in PostgreSQL, ten times a second).
            time.sleep(1.0)
        outcomes = dict(runs.values_list("outcome").annotate(n=Count("pk")))
        last = runs.aggregate(last=Max("finished_at"))["last"]
        # A backend that went (a connection past CONN_MAX_AGE) counts until last seen.
        database = sum(last_cpu - first for first, last_cpu in backends.values())
        return {"outcomes": outcomes, "last_finished": last, "database_cpu": database}


def wal_position() -> int | None:
    """PostgreSQL's current write-ahead log position in bytes (None on SQLite): the WAL a
    stretch of work wrote is the difference, the same for the same work on any machine."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
        return int(cursor.fetchone()[0])


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return total


def rss_kib(pid: int) -> int:
    peak = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    peak = max(peak, int(line.split()[1]))
    return peak


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(FileNotFoundError):
        return [int(p) for p in path.read_text().split()]
    return []


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def in_parallel(calls: list[Callable[[], Any]], threads: int = 8) -> list[Any]:
    """Control-API calls side by side (devcloud serves each connection in a thread)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda call: call(), calls))


@contextlib.contextmanager
def fleet(
    *,
    prefix: str,
    tenants: int,
    incidents: int,
    workers: int,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Fleet]:
    """devcloud with `tenants` consented tenants of `incidents` each, the same tenants in the
    database (named `prefix` + n), and `workers` worker processes of `concurrency` threads.
    Everything is removed on the way out."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("Set REDIS_URL (a Redis database the benchmark may flush)")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    state = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    server = launcher.start(state)
    dc = server.client
    try:
        secret = secrets.token_urlsafe(24)
        app = dc.create_app(display_name="Partner Portal bench", secrets=[secret])
        dc.set_limits(per_minute=100_000, per_hour=1_000_000)  # not the subject here
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",  # as production runs (a DEBUG in the shell keeps every query)
            "DJANGO_SETTINGS_MODULE": "partner_portal.settings",
            "MICROSOFT_CLIENT_ID": app["client_id"],
            "MICROSOFT_CLIENT_SECRET": secret,
            "MICROSOFT_LOGIN_BASE_URL": server.base_url,
            "MICROSOFT_DEFENDER_BASE_URL": server.base_url,
            "MICROSOFT_CA_BUNDLE": server.ca_file,
            "DEFENDER_CALLS_PER_MINUTE": "100000",
            "DEFENDER_CALLS_PER_HOUR": "1000000",
            "LOG_LEVEL": "WARNING",
            "ENV_FILE": "",
            **(extra_env or {}),
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connection

        schema.migrate()
        print(f"database: {connection.vendor}; {tenants} tenants × {incidents} incidents")
        remove_tenants(prefix)
        maintain()
        pks, entra_ids = create_tenants(dc, app["client_id"], prefix, tenants, incidents)
        bench = Fleet(
            devcloud=dc,
            devcloud_pid=server.process.pid,
            tenant_pks=pks,
            entra_ids=entra_ids,
            env=env,
        )
        try:
            for n in range(workers):
                bench.workers.append(start_worker(env, concurrency, f"{prefix.strip()}{n}"))
            yield bench
        finally:
            for worker in bench.workers:
                stop_worker(worker)
            remove_tenants(prefix)
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            redis.Redis.from_url(redis_url).flushdb()


def create_tenants(
    dc: Any, client_id: str, prefix: str, count: int, incidents: int
) -> tuple[list[int], dict[int, str]]:
    from partner_portal.tenants.models import Tenant

    ids = [str(uuid.uuid4()) for _ in range(count)]

    def one(n: int) -> Callable[[], None]:
        def call() -> None:
            dc.create_tenant(tenant_id=ids[n])
            dc.set_consent(ids[n], client_id, roles=["Incident.Read.All"])
            if incidents:
                dc.generate_incidents(ids[n], incidents, seed=n)

        return call

    in_parallel([one(n) for n in range(count)])
    rows = Tenant.objects.bulk_create(
        Tenant(
            display_name=f"{prefix}{n}",
            entra_tenant_id=uuid.UUID(ids[n]),
            consent_state=Tenant.ConsentState.CONSENTED,
            granted_roles=["Incident.Read.All"],
        )
        for n in range(count)
    )
    pks = [t.pk for t in rows]
    return pks, {pk: ids[n] for n, pk in enumerate(pks)}


def maintain(*, vacuum: bool = True) -> None:
    """VACUUM ANALYZE the tables the sync writes, as autovacuum would have (PostgreSQL).

    Some servers run with autovacuum off (this development machine's does): the dead rows
    of earlier benchmarks' tenants, and statistics from before them, would otherwise decide
    the plans measured here — a lookup of 20 incidents' alerts became a sequential scan of a
    gigabyte of dead rows. Called when the fleet is set up and after its first sync;
    `vacuum=False` (statistics only) while a table grows, as autoanalyze would."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    tables = ["tenants_tenant"]
    tables += [t for t in connection.introspection.table_names() if t.startswith("incidents_")]
    with connection.cursor() as cursor:
        for table in tables:
            verb = "VACUUM ANALYZE" if vacuum else "ANALYZE"
            cursor.execute(f"{verb} {connection.ops.quote_name(table)}")


def remove_tenants(prefix: str) -> None:
    """The bench's tenants and all that hangs off them (incidents, runs: cascades)."""
    from partner_portal.tenants.models import Tenant

    Tenant.objects.filter(display_name__startswith=prefix).delete()


def start_worker(env: dict[str, str], concurrency: int, name: str) -> dict:
    """A worker as docker-compose.yml runs it (threads pool), ready for tasks."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "celery", "-A", "partner_portal", "worker", "--pool", "threads"]
    cmd += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "-n", f"{name}@%h"]
    cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    from partner_portal.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(log.read_text())
        if any(name in n for reply in app.control.ping(timeout=0.5) for n in reply):
            break
    print(f"worker {name}: ready (pid {proc.pid}, {concurrency} threads)", flush=True)
    return {"proc": proc, "log": log}


def stop_worker(worker: dict) -> None:
    worker["proc"].terminate()
    try:
        worker["proc"].wait(20)
    except subprocess.TimeoutExpired:
        worker["proc"].kill()
        worker["proc"].wait(5)
    worker["log"].unlink(missing_ok=True)
