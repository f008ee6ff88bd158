"""Alert delivery end to end: outbox rows → dispatcher → Celery workers → a webhook receiver.

    REDIS_URL=redis://127.0.0.1:6379/8 python bench/notify.py [--changes 1000] [--tenants 100]
        [--rules 5] [--latency-ms 100] [--workers 2] [--concurrency 16] [--dispatch-every 1]

Uses PostgreSQL when DATABASE_URL is set (bench tenants, rules and channels are removed at the
start of the next run), else a throwaway SQLite file under var/. The Redis database in
REDIS_URL is the broker and the cache, and is FLUSHED at the start.

Writes `--changes` new incidents spread over `--tenants` tenants through the sync's own
`store_page` (so the outbox rows commit with them), with `--rules` rules that all match, each
sending to its own signed webhook on a local receiver that answers after `--latency-ms`. The
dispatcher runs here every `--dispatch-every` seconds, as beat would. Prints deliveries per
second and the lag from each incident's commit to the receiver getting its message (p50/p95).
The per-channel cap is lifted: the subject is delivery, not folding.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_PREFIX = "bench-notify "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--rules", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument("--dispatch-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=600)
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(latency: float) -> tuple[str, dict[str, float], ThreadingHTTPServer]:
    """webhook-id → when it first arrived (the receiver's clock, wall time)."""
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            with lock:
                arrived.setdefault(self.headers["webhook-id"], time.time())
            time.sleep(latency)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}/hook", arrived, server


def start_worker(env: dict, concurrency: int, n: int) -> tuple[subprocess.Popen, Path]:
    log = Path(tempfile.mkstemp(prefix="bench-notify-worker-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "celery", "-A", "partner_portal", "worker", "--pool", "threads"]
    cmd += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "-n", f"notify{n}@%h"]
    cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603
            cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    args = parse_args()
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("Set REDIS_URL (a Redis database the benchmark may flush)")
    database_url = (
        os.environ.get("DATABASE_URL") or f"sqlite:///{ROOT / 'var' / 'bench-notify.sqlite3'}"
    )
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).unlink(missing_ok=True)
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "DJANGO_SETTINGS_MODULE": "partner_portal.settings",
        "ALERTS_MAX_PER_CHANNEL_PER_MINUTE": "1000000",
        "ALERTS_HTTP_TIMEOUT": "10",
        "LOG_LEVEL": "WARNING",
        "ENV_FILE": "",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from partner_portal.alerts import tasks
    from partner_portal.alerts.models import (
        Channel,
        Delivery,
        DeliveryStatus,
        Rule,
        new_signing_secret,
    )
    from partner_portal.incidents import store
    from partner_portal.incidents.models import ChangeKind, SyncOutcome, SyncRun
    from partner_portal.microsoft.defender import format_time, parse_incident
    from partner_portal.tenants.models import Tenant

    print(f"database: {connection.vendor}; migrating", flush=True)
    call_command("migrate", verbosity=0)
    Tenant.objects.filter(display_name__startswith=BENCH_PREFIX).delete()
    Rule.objects.filter(name__startswith=BENCH_PREFIX).delete()
    Channel.objects.filter(name__startswith=BENCH_PREFIX).delete()

    url, arrived, server = start_receiver(args.latency_ms / 1000)
    tenants = []
    for n in range(args.tenants):
        tenant = Tenant.objects.create(display_name=f"{BENCH_PREFIX}{n}", consent_state="consented")
        # Not a first sync: new incidents are alerts, not imported history.
        SyncRun.objects.create(
            tenant=tenant, started_at=timezone.now(), outcome=SyncOutcome.SUCCESS
        )
        tenants.append(tenant)
    for n in range(args.rules):
        channel = Channel(name=f"{BENCH_PREFIX}{n}", kind="webhook")
        channel.url, channel.secret = url, new_signing_secret()
        channel.save()
        rule = Rule.objects.create(name=f"{BENCH_PREFIX}{n}", kinds=list(ChangeKind.values))
        rule.channels.add(channel)

    workers = [start_worker(env, args.concurrency, n) for n in range(args.workers)]
    from partner_portal.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if len(replies) >= args.workers:
            break
    print(
        f"{args.workers} workers × {args.concurrency} threads ready; receiver latency "
        f"{args.latency_ms} ms; dispatcher every {args.dispatch_every}s",
        flush=True,
    )

    stop = threading.Event()

    def dispatcher() -> None:
        while not stop.wait(args.dispatch_every):
            tasks.dispatch_alerts()

    expected = args.changes * args.rules
    try:
        base = datetime.now(UTC) - timedelta(minutes=5)
        start = time.time()
        thread = threading.Thread(target=dispatcher, daemon=True)
        thread.start()
        per_tenant = max(1, args.changes // args.tenants)
        made = 0
        for i, tenant in enumerate(tenants):
            count = per_tenant if i < len(tenants) - 1 else args.changes - made
            items = [
                parse_incident(
                    {
                        "incidentId": 10_000 + k,
                        "incidentName": f"Bench incident {k}",
                        "severity": "High",
                        "status": "Active",
                        "createdTime": format_time(base),
                        "lastUpdateTime": format_time(base + timedelta(seconds=k)),
                    }
                )
                for k in range(count)
            ]
            store.store_page(tenant=tenant, incidents=items, synced_at=timezone.now())
            made += count
        written = time.time()
        deadline = time.monotonic() + args.timeout
        while len(arrived) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        done = time.time()
    finally:
        stop.set()
        for proc, _ in workers:
            proc.terminate()
        for proc, _ in workers:
            proc.wait(30)
        server.shutdown()

    rows = Delivery.objects.filter(rule__name__startswith=BENCH_PREFIX).select_related("change")
    lags = [
        arrived[d.message_id] - d.change.created_at.timestamp()
        for d in rows
        if d.message_id in arrived
    ]
    sent = rows.filter(status=DeliveryStatus.SENT).count()
    print(f"changes written       {made} in {written - start:.1f}s across {args.tenants} tenants")
    print(
        f"deliveries            {len(arrived)} of {expected} arrived; {sent} marked sent; "
        f"{rows.count()} rows (one per rule × change)"
    )
    print(
        f"throughput            {len(arrived) / (done - start):.0f} deliveries/s "
        f"(bound: {args.workers * args.concurrency / (args.latency_ms / 1000):.0f}/s "
        f"= slots ÷ receiver latency)"
    )
    if lags:
        print(
            f"lag commit→receiver   p50 {percentile(lags, 50):.2f}s  "
            f"p95 {percentile(lags, 95):.2f}s  max {max(lags):.2f}s"
        )
    return 0 if len(arrived) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
