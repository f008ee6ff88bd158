"""Fan-out: one schedule cycle over N tenants, each with a one-page change, against the bound.

    DATABASE_URL=postgres://…/db REDIS_URL=redis://127.0.0.1:6379/8 python bench/fanout.py
        [--tenants 1000] [--changes 20] [--latency-ms 200] [--workers 2] [--concurrency 8]
        [--cycles 2] [--profile 50]

Sets up a fleet (bench/fleet.py: its own devcloud, tenants named "bench-fanout N", removed
before and after; the Redis database is flushed). Cycle 0 is every tenant's first sync
(`--changes` incidents each: one page); before each further cycle devcloud changes
`--changes` incidents of every tenant. A cycle queues one sync per tenant through the
scheduler's own fan-out and ends when every tenant has a finished run.

Prints per cycle: its time against the concurrency bound (list calls × latency ÷ worker
slots), worker CPU per tenant-run, and the discovery and token requests devcloud served —
each against issue 18's goal (≤ 1.5× the bound, ≤ 10 ms CPU per one-page run, discovery once
per tenant across all workers) — and, besides, the CPU of devcloud and PostgreSQL per run and
the write-ahead log PostgreSQL wrote per run (the same for the same work on any machine). At
stop 27: 520–650 KB a one-page run in a cycle, two thirds of it the search indexes' entries,
written again with every changed incident; at stop 28, with the words in a table of their
own (written when they change: ~40% of devcloud's changes add an alert), 330–420 KB.
`--profile N` then runs N one-page syncs in this process under cProfile (CPU time) and prints
where it goes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet import Fleet, fleet, in_parallel, maintain, wal_position  # noqa: E402

GOAL_BOUND_RATIO = 1.5
GOAL_CPU_MS = 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20, help="changed incidents per tenant")
    parser.add_argument("--latency-ms", type=int, default=200, help="per list call, in devcloud")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--cycles", type=int, default=2, help="cycles after the first sync")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per cycle")
    parser.add_argument("--profile", type=int, default=0, help="one-page runs to profile")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    with fleet(
        prefix="bench-fanout ",
        tenants=args.tenants,
        incidents=args.changes,
        workers=args.workers,
        concurrency=args.concurrency,
    ) as bench:
        bench.devcloud.add_fault(
            endpoint="list_incidents", kind="latency", latency_ms=args.latency_ms
        )
        slots = args.workers * args.concurrency
        rows = []
        for cycle in range(args.cycles + 1):
            if cycle == 1:
                maintain()  # as autovacuum would after the first sync's inserts
            if cycle:
                change_all(bench, args.changes)
            rows.append(run_cycle(bench, cycle, args, slots))
        rss = bench.worker_rss_mib()
        if args.profile:
            change_all(bench, args.changes)
            profile(bench, args.profile)
    print()
    print(
        f"{args.tenants} tenants × {args.changes} changed incidents, {args.latency_ms} ms per "
        f"list call, {args.workers} workers × {args.concurrency} threads"
    )
    for row in rows:
        print(row)
    print(f"worker RSS            {rss:.0f} MiB (the larger worker, after the cycles)")
    return 0


def change_all(bench: Fleet, changes: int) -> None:
    dc = bench.devcloud
    in_parallel(
        [lambda t=t: dc.evolve(t, changed=changes, new=0) for t in bench.entra_ids.values()]
    )


def run_cycle(bench: Fleet, cycle: int, args: argparse.Namespace, slots: int) -> str:
    from django.db.models import Sum
    from django.utils import timezone

    from partner_portal.incidents.models import SyncRun

    bench.devcloud.clear_requests()
    cpu_before = bench.worker_cpu_seconds()
    devcloud_before = bench.devcloud_cpu_seconds()
    tick = timezone.now()
    wal_before = wal_position()
    bench.fan_out()
    done = bench.wait_for_runs(tick, timeout=args.timeout)
    wal_after = wal_position()
    cpu = bench.worker_cpu_seconds() - cpu_before
    devcloud_ms = (bench.devcloud_cpu_seconds() - devcloud_before) * 1000 / len(bench.tenant_pks)
    database_ms = done["database_cpu"] * 1000 / len(bench.tenant_pks)
    wal = ""
    if wal_before is not None and wal_after is not None:
        wal = f", WAL {(wal_after - wal_before) / 1024 / len(bench.tenant_pks):.0f} KB"
    seconds = (done["last_finished"] - tick).total_seconds()
    runs = SyncRun.objects.filter(tenant_id__in=bench.tenant_pks, started_at__gte=tick)
    totals = runs.aggregate(pages=Sum("pages"), calls=Sum("api_calls"))
    requests = bench.requests()
    lists = requests.get("list_incidents", 0)
    bound = lists * args.latency_ms / 1000 / slots
    cpu_ms = cpu * 1000 / max(1, len(bench.tenant_pks))
    discovery, token = requests.get("discovery", 0), requests.get("token", 0)
    discovery_goal = len(bench.tenant_pks) if cycle == 0 else 0
    label = "first sync" if cycle == 0 else f"cycle {cycle}"
    return (
        f"{label:<11} {seconds:6.1f} s vs bound {bound:5.1f} s = {seconds / bound:4.2f}× "
        f"(goal ≤ {GOAL_BOUND_RATIO}×: {seconds / bound / GOAL_BOUND_RATIO:.2f} of it); "
        f"worker CPU {cpu_ms:5.1f} ms/run (goal ≤ {GOAL_CPU_MS:.0f}: "
        f"{cpu_ms / GOAL_CPU_MS:.2f} of it); discovery {discovery} (goal ≤ {discovery_goal}), "
        f"token {token}, list {lists}, pages {totals['pages']}, outcomes {done['outcomes']}\n"
        f"{'':<11} besides the workers, per run: devcloud {devcloud_ms:.1f} ms CPU, "
        f"PostgreSQL ≥ {database_ms:.1f} ms (its backends for this database, sampled){wal}"
    )


def profile(bench: Fleet, count: int) -> None:
    """One-page syncs in this process (no Celery): CPU per run, split into storing the page
    (incidents/store.py), parsing it, and the rest (lease, run record, token, budget, HTTP);
    then where the rest goes, under cProfile."""
    import cProfile
    import pstats

    from partner_portal.incidents import store, sync
    from partner_portal.microsoft import client
    from partner_portal.tenants.models import Tenant

    spent = {"store": 0.0, "parse": 0.0}

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - began

        return call

    sync.store_fenced_page = timed("store", store.store_fenced_page)
    client.parse_list_items = timed("parse", client.parse_list_items)
    tenants = list(Tenant.objects.filter(pk__in=bench.tenant_pks[: count + 1]))
    sync.sync_tenant(tenant=tenants.pop())  # warm: this process's connections
    spent.update(store=0.0, parse=0.0)
    began = time.process_time()
    for tenant in tenants[: count // 2]:
        sync.sync_tenant(tenant=tenant)
    runs = max(1, len(tenants[: count // 2]))
    total = (time.process_time() - began) * 1000 / runs
    store_ms, parse_ms = spent["store"] * 1000 / runs, spent["parse"] * 1000 / runs
    print(
        f"\nprofile: {total:.1f} ms CPU per one-page run in one process, without Celery: "
        f"storing the page {store_ms:.1f}, parsing it {parse_ms:.1f}, "
        f"the rest {total - store_ms - parse_ms:.1f}"
    )
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for tenant in tenants[count // 2 :]:
        sync.sync_tenant(tenant=tenant)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"partner_portal", 30)


if __name__ == "__main__":
    sys.exit(main())
