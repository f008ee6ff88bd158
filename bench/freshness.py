"""Freshness: seconds from a change at Microsoft until its row is in the database, on a schedule.

    DATABASE_URL=postgres://…/db REDIS_URL=redis://127.0.0.1:6379/8 python bench/freshness.py
        [--tenants 1000] [--interval 60] [--cycles 4] [--changes-per-second 2]
        [--latency-ms 200] [--workers 2] [--concurrency 8]

Sets up a fleet (bench/fleet.py: its own devcloud, tenants named "bench-freshness N" with 20
incidents each, removed before and after; the Redis database is flushed) and syncs every
tenant once. Then it ticks every `--interval` seconds for `--cycles` ticks, as beat does:
the bench tenants whose lease is free are queued through the scheduler's own fan-out (with
its reconciliation pick). Meanwhile devcloud changes one incident of a random tenant at
random moments (`--changes-per-second` on average); a watcher polls the database every 0.1 s
for each changed incident's new `lastUpdateTime`. Ticks go on (at most two more) until every
change has arrived.

Prints p50/p95/max seconds from change to row, and each cycle's time from its tick until its
last run finished as a share of the interval — against issue 18's goal (p95 ≤ 60 s at a
one-minute schedule, cycles using ≤ 50% of the interval).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import Fleet, fleet, maintain, percentile  # noqa: E402

GOAL_P95_SECONDS = 60.0
GOAL_UTILISATION = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60, help="schedule, seconds")
    parser.add_argument("--cycles", type=int, default=4, help="ticks with changes")
    parser.add_argument("--changes-per-second", type=float, default=2.0)
    parser.add_argument("--latency-ms", type=int, default=200, help="per list call, in devcloud")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with fleet(
        prefix="bench-freshness ",
        tenants=args.tenants,
        incidents=20,
        workers=args.workers,
        concurrency=args.concurrency,
    ) as bench:
        bench.devcloud.add_fault(
            endpoint="list_incidents", kind="latency", latency_ms=args.latency_ms
        )
        from django.utils import timezone

        first = timezone.now()
        bench.fan_out()
        bench.wait_for_runs(first, timeout=1200)
        print(f"first sync of {args.tenants} tenants: {(timezone.now() - first).seconds} s")
        maintain()  # as autovacuum would after the first sync's inserts
        changes, ticks = measure(bench, args)
        cycles = utilisation(bench, ticks, args.interval)
    report(args, changes, cycles)
    return 0


class Change:
    def __init__(self, tenant_pk: int, incident_id: int, at: float) -> None:
        self.tenant_pk = tenant_pk
        self.incident_id = incident_id
        self.at = at  # wall clock just before devcloud changed it
        self.arrived: float | None = None


def measure(bench: Fleet, args: argparse.Namespace) -> tuple[list[Change], list[tuple]]:
    """Ticks, changes and the watcher, until every change arrived (or two more ticks)."""
    rng = random.Random(args.seed)
    changes: list[Change] = []
    lock = threading.Lock()
    stop_changing = threading.Event()
    stop_watching = threading.Event()

    def change() -> None:
        tenants = list(bench.entra_ids.items())
        while not stop_changing.wait(rng.expovariate(args.changes_per_second)):
            pk, entra_id = rng.choice(tenants)
            at = time.time()
            changed = bench.devcloud.evolve(entra_id, changed=1, new=0)["changed"]
            with lock:
                changes.extend(Change(pk, int(i), at) for i in changed)

    def watch() -> None:
        from django.db import connections

        from partner_portal.incidents.models import Incident

        try:
            while not stop_watching.wait(0.1):
                with lock:
                    pending = [c for c in changes if c.arrived is None]
                if not pending:
                    continue
                since = datetime.fromtimestamp(min(c.at for c in pending), UTC)
                rows = Incident.objects.filter(
                    tenant_id__in={c.tenant_pk for c in pending}, last_update_time__gte=since
                ).values_list("tenant_id", "microsoft_id", "last_update_time")
                now = time.time()
                newest = {(t, m): u.timestamp() for t, m, u in rows}
                for c in pending:
                    seen = newest.get((c.tenant_pk, c.incident_id))
                    if seen is not None and seen >= c.at - 0.01:  # devcloud rounds to 10 ms
                        c.arrived = now
        finally:
            connections.close_all()

    changer = threading.Thread(target=change, daemon=True)
    watcher = threading.Thread(target=watch, daemon=True)
    ticks: list[tuple] = []
    watcher.start()
    changer.start()
    start = time.monotonic()
    tick = 0
    while True:
        ticks.append(schedule_tick(bench))
        tick += 1
        if tick == args.cycles:
            stop_changing.set()
            changer.join()
        with lock:
            waiting = any(c.arrived is None for c in changes)
        if tick >= args.cycles and (not waiting or tick >= args.cycles + 2):
            break
        time.sleep(max(0.0, start + tick * args.interval - time.monotonic()))
    deadline = time.monotonic() + args.interval
    while time.monotonic() < deadline and any(c.arrived is None for c in changes):
        time.sleep(0.1)
    stop_watching.set()
    watcher.join()
    return changes, ticks


def schedule_tick(bench: Fleet) -> tuple:
    """What beat's `sync_all_tenants` does, for the bench tenants only: the due ones (lease
    free), with the reconciliation pick, through the same fan-out."""
    from django.utils import timezone

    from partner_portal.incidents import sync, tasks
    from partner_portal.tenants.models import Tenant

    now = timezone.now()
    due = list(
        Tenant.objects.filter(pk__in=bench.tenant_pks)
        .syncable()
        .lease_free(now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    tasks.fan_out(due, reconcile=set(sync.reconcile_due(due)))
    return now, len(due)


def utilisation(bench: Fleet, ticks: list[tuple], interval: float) -> list[float]:
    """Per tick: from the tick until the last of its runs finished, ÷ the interval. A tick's
    runs are the first N to finish among those started since (the queue is first in, first
    out), N the tenants it queued."""
    from partner_portal.incidents.models import SyncRun
    from partner_portal.incidents.sync import UNFINISHED

    shares = []
    for n, (at, queued) in enumerate(ticks):
        finished = (
            SyncRun.objects.filter(tenant_id__in=bench.tenant_pks, started_at__gte=at)
            .exclude(outcome__in=UNFINISHED)
            .order_by("finished_at")
            .values_list("finished_at", flat=True)
        )
        ends = list(finished[:queued])
        deadline = time.monotonic() + interval
        while n == len(ticks) - 1 and len(ends) < queued and time.monotonic() < deadline:
            time.sleep(0.2)  # the last tick's runs, still under way when the changes were in
            ends = list(finished[:queued])
        if queued and len(ends) == queued:
            shares.append((ends[-1] - at) / timedelta(seconds=interval))
        elif queued:
            shares.append(float("inf"))  # not all of its runs finished
    return shares


def report(args: argparse.Namespace, changes: list[Change], cycles: list[float]) -> None:
    seconds = [c.arrived - c.at for c in changes if c.arrived is not None]
    missing = sum(1 for c in changes if c.arrived is None)
    print()
    print(
        f"{args.tenants} tenants, a tick every {args.interval:.0f} s, {args.cycles} ticks with "
        f"changes, {args.latency_ms} ms per list call, {args.workers} workers × "
        f"{args.concurrency} threads"
    )
    if seconds:
        p50, p95 = percentile(seconds, 50), percentile(seconds, 95)
        print(
            f"change → row         {len(seconds)} changes: p50 {p50:.1f} s, p95 {p95:.1f} s "
            f"(goal ≤ {GOAL_P95_SECONDS:.0f}: {p95 / GOAL_P95_SECONDS:.2f} of it), "
            f"max {max(seconds):.1f} s; {missing} never arrived"
        )
    if cycles:
        worst = max(cycles)
        shares = ", ".join(f"{c:.0%}" for c in cycles)
        print(
            f"cycle utilisation    {shares} of the interval; worst {worst:.0%} "
            f"(goal ≤ {GOAL_UTILISATION:.0%}: {worst / GOAL_UTILISATION:.2f} of it)"
        )


if __name__ == "__main__":
    sys.exit(main())
