"""The incident sync end to end: devcloud → Celery workers on Redis → the database.

    REDIS_URL=redis://127.0.0.1:6379/8 python bench/sync.py [--tenants 5] [--incidents 2000]
        [--latency-ms 50] [--concurrency N] [--pool threads]

Uses PostgreSQL when DATABASE_URL is set (its incident tables get bench tenants, which are
removed at the start of the next run), else a throwaway SQLite file under var/. The Redis
database in REDIS_URL is the broker and the shared cache, and is FLUSHED at the start.
Starts its own devcloud (latency L on every list call) and one worker process with
--concurrency slots. Prints throughput, API and token calls against their minimum, wall time
against the concurrency bound, the upsert path against raw SQL, and the worker's peak RSS.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devcloud import launcher  # noqa: E402

BENCH_PREFIX = "bench-sync "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--incidents", type=int, default=2000, help="per tenant")
    parser.add_argument("--latency-ms", type=int, default=50, help="per list call, in devcloud")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=0, help="slots per worker (default: tenants ÷ workers)"
    )
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--timeout", type=float, default=600)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    concurrency = args.concurrency or max(1, math.ceil(args.tenants / args.workers))
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit(
            "Set REDIS_URL (a Redis database the benchmark may flush), e.g. redis://127.0.0.1:6379/8"
        )
    database_url = (
        os.environ.get("DATABASE_URL") or f"sqlite:///{ROOT / 'var' / 'bench-sync.sqlite3'}"
    )
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).unlink(missing_ok=True)

    state = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    print(f"devcloud: starting (state in {state})", flush=True)
    server = launcher.start(state)
    dc = server.client
    try:
        return run(args, concurrency, redis_url, database_url, server, dc)
    finally:
        server.stop()


def run(args, concurrency, redis_url, database_url, server, dc) -> int:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    secret = secrets.token_urlsafe(24)
    app = dc.create_app(display_name="Partner Portal bench", secrets=[secret])
    dc.set_limits(per_minute=1000, per_hour=100_000)  # the API's limits are not the subject
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SETTINGS_MODULE": "partner_portal.settings",
        "MICROSOFT_CLIENT_ID": app["client_id"],
        "MICROSOFT_CLIENT_SECRET": secret,
        "MICROSOFT_LOGIN_BASE_URL": server.base_url,
        "MICROSOFT_DEFENDER_BASE_URL": server.base_url,
        "MICROSOFT_CA_BUNDLE": server.ca_file,
        "DEFENDER_CALLS_PER_MINUTE": "1000",
        "DEFENDER_CALLS_PER_HOUR": "100000",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from partner_portal.incidents import tasks
    from partner_portal.incidents.models import SyncRun
    from partner_portal.tenants.models import Tenant

    print(f"database: {connection.vendor}; migrating", flush=True)
    call_command("migrate", verbosity=0)
    Tenant.objects.filter(display_name__startswith=BENCH_PREFIX).delete()

    print(f"devcloud: {args.tenants} tenants × {args.incidents} incidents", flush=True)
    tenants = []
    for n in range(args.tenants):
        tid = str(uuid.uuid4())
        dc.create_tenant(tenant_id=tid)
        dc.set_consent(tid, app["client_id"], roles=["Incident.Read.All"])
        dc.generate_incidents(tid, args.incidents, seed=n)
        tenants.append(
            Tenant.objects.create(
                display_name=f"{BENCH_PREFIX}{n}",
                entra_tenant_id=uuid.UUID(tid),
                consent_state=Tenant.ConsentState.CONSENTED,
            )
        )
    dc.add_fault(endpoint="list_incidents", kind="latency", latency_ms=args.latency_ms)
    dc.clear_requests()

    workers = [start_worker(env, args.pool, concurrency, n) for n in range(args.workers)]
    try:
        started = time.monotonic()
        tasks.sync_all_tenants.delay()
        ids = [t.pk for t in tenants]
        deadline = started + args.timeout
        while SyncRun.objects.filter(tenant_id__in=ids, outcome="success").count() < len(ids):
            if time.monotonic() > deadline:
                print(workers[0]["log"].read_text()[-3000:])
                sys.exit("timed out")
            time.sleep(0.05)
        wall = time.monotonic() - started
        rss = max(peak_rss_kib(w["proc"].pid) for w in workers)
    finally:
        for worker in workers:
            stop_worker(worker)

    log = dc.requests_log()
    runs = list(SyncRun.objects.filter(tenant_id__in=ids, outcome="success"))
    total = sum(r.created_count + r.updated_count for r in runs)
    pages = sum(r.pages for r in runs)
    list_calls = log["by_endpoint"].get("list_incidents", 0)
    token_calls = log["by_endpoint"].get("token", 0)
    minimum = args.tenants * max(1, math.ceil(args.incidents / 100))
    slots = min(concurrency * args.workers, args.tenants)
    bound = pages * args.latency_ms / 1000 / slots
    print()
    print(
        f"workers={args.workers} pool={args.pool} concurrency={concurrency} per worker, "
        f"db={connection.vendor}, {os.cpu_count()} cores"
    )
    print(f"incidents synced      {total} in {wall:.2f}s = {total / wall:,.0f} incidents/s")
    print(f"API list calls        {list_calls} (minimum {minimum}: ⌈M/100⌉ × tenants)")
    print(f"token requests        {token_calls} (tenants: {args.tenants})")
    print(
        f"wall time             {wall:.2f}s vs {bound:.2f}s concurrency bound "
        f"({pages} pages × {args.latency_ms} ms ÷ {slots} parallel syncs) = {wall / bound:.2f}×"
    )
    print(f"429 answers           {log['by_status'].get('429', 0)}")
    ingest(dc, tenants[0], connection)
    print(f"peak worker RSS       {rss / 1024:.0f} MiB (the largest worker process)")
    return 0


def start_worker(env: dict, pool: str, concurrency: int, n: int) -> dict:
    log = Path(tempfile.mkstemp(prefix="bench-worker-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "celery", "-A", "partner_portal", "worker", "--pool", pool]
    cmd += ["--concurrency", str(concurrency), "--loglevel", "WARNING"]
    cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"bench{n}@%h"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    from partner_portal.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if any(f"bench{n}@" in name for reply in replies for name in reply):
            break
        if proc.poll() is not None:
            sys.exit(log.read_text())
    print(f"worker {n}: ready (pid {proc.pid}, pool {pool}, concurrency {concurrency})", flush=True)
    return {"proc": proc, "log": log}


def stop_worker(worker: dict) -> None:
    worker["proc"].terminate()
    try:
        worker["proc"].wait(20)
    except subprocess.TimeoutExpired:
        worker["proc"].kill()


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of the worker and its pool children, the largest."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    peak = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except FileNotFoundError:
            continue
    return peak


def ingest(dc, tenant, connection) -> None:
    """The upsert path (store.store_page) against raw SQL of the same rows, per page of 100."""
    from django.utils import timezone

    from partner_portal.incidents import store
    from partner_portal.microsoft.defender import parse_incident
    from partner_portal.tenants.models import Tenant

    items = [parse_incident(i) for i in dc.incidents(str(tenant.entra_tenant_id))]
    pages = [items[i : i + 100] for i in range(0, len(items), 100)]
    alerts = sum(len(i.alerts) for i in items)
    results = {}
    for label in ("upsert path", "raw SQL"):
        target = Tenant.objects.create(display_name=f"{BENCH_PREFIX}ingest {label}")
        timings = []
        for _ in range(2):  # first inserts, then updates every row
            began = time.perf_counter()
            for page in pages:
                if label == "upsert path":
                    store.store_page(tenant=target, incidents=page, synced_at=timezone.now())
                else:
                    raw_store_page(connection, target.pk, page)
            timings.append(time.perf_counter() - began)
        results[label] = timings
    for n, phase in enumerate(("insert", "update")):
        ours, raw = results["upsert path"][n], results["raw SQL"][n]
        print(
            f"ingest ({phase})       upsert path {len(items) / ours:,.0f} incidents/s, "
            f"raw {connection.vendor} INSERT … ON CONFLICT {len(items) / raw:,.0f}/s "
            f"(upsert path at {raw / ours:.2f}× raw speed; {len(items)} incidents, {alerts} alerts)"
        )


def raw_store_page(connection, tenant_pk: int, page: list) -> None:
    """The same rows as store_page, as hand-written SQL through the driver's cursor
    (psycopg on PostgreSQL): INSERT … ON CONFLICT DO UPDATE, then the alerts replaced."""
    import json

    from django.db import transaction
    from django.utils import timezone

    from partner_portal.incidents.models import id_hash
    from partner_portal.incidents.store import search_text
    from partner_portal.microsoft.vocabulary import severity_rank

    now = timezone.now()
    postgres = connection.vendor == "postgresql"
    p = "%s"
    cols = (
        "tenant_id, microsoft_id, name, severity, severity_rank, status, classification, "
        "determination, assigned_to, tags, comments, redirect_incident_id, created_time, "
        "last_update_time, portal_url, alert_count, search_text, raw, text_repaired, synced_at"
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols.split(", ")[2:])
    # Only constant column names and placeholders are interpolated.
    insert = f"INSERT INTO incidents_incident ({cols}) VALUES ({', '.join([p] * 20)})"  # noqa: S608
    sql = f"{insert} ON CONFLICT (tenant_id, microsoft_id) DO UPDATE SET {updates}"
    rows = [
        (
            tenant_pk,
            i.incident_id,
            i.name,
            i.severity,
            severity_rank(i.severity),
            i.status,
            i.classification,
            i.determination,
            i.assigned_to,
            json.dumps(i.tags),
            json.dumps(i.comments),
            i.redirect_incident_id,
            i.created_time if postgres else i.created_time.isoformat(),
            i.last_update_time if postgres else i.last_update_time.isoformat(),
            i.incident_uri,
            len(i.alerts),
            search_text(i),
            json.dumps(i.raw),
            i.text_repaired,
            now if postgres else now.isoformat(),
        )
        for i in page
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor if postgres else cursor  # psycopg's own cursor on PostgreSQL
        raw.executemany(sql, rows)
        ids = [i.incident_id for i in page]
        marks = ", ".join([p] * len(ids))
        cursor.execute(
            f"SELECT microsoft_id, id FROM incidents_incident WHERE tenant_id = {p} "  # noqa: S608
            f"AND microsoft_id IN ({marks})",
            [tenant_pk, *ids],
        )
        pks = dict(cursor.fetchall())
        cursor.execute(
            f"DELETE FROM incidents_alert WHERE incident_id IN ({', '.join([p] * len(pks))})",  # noqa: S608
            list(pks.values()),
        )
        alert_rows = [
            (
                pks[i.incident_id],
                a.alert_id,
                id_hash(a.alert_id),
                a.title,
                a.description,
                a.severity,
                a.category,
                a.status,
                a.detection_source,
                a.service_source,
                json.dumps(a.mitre_techniques),
                a.first_activity
                if postgres or a.first_activity is None
                else a.first_activity.isoformat(),
                a.last_activity
                if postgres or a.last_activity is None
                else a.last_activity.isoformat(),
                json.dumps(a.devices),
                json.dumps(a.entities),
                json.dumps(a.raw),
            )
            for i in page
            for a in i.alerts
        ]
        alert_cols = (
            "incident_id, microsoft_id, microsoft_id_hash, title, description, severity, "
            "category, status, detection_source, service_source, mitre_techniques, first_activity, "
            "last_activity, devices, entities, raw"
        )
        alert_values = ", ".join([p] * 16)
        raw.executemany(
            f"INSERT INTO incidents_alert ({alert_cols}) VALUES ({alert_values})",  # noqa: S608
            alert_rows,
        )


if __name__ == "__main__":
    sys.exit(main())
