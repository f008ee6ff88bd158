"""The chaos suite's parts: a private Redis it may kill, a scheduler tick (beat's fan-out,
sent from the test process), and the comparison with devcloud's ground truth that makes a
row of the scenario table (lost, duplicated, stale, extra calls, 429s, seconds to recover).

Timings are scaled down (an 8 s lease, a 10 s schedule) in the same order as the defaults
(90 s lease < 5 min schedule): "recovered within 2 schedule intervals" means the same. Not
shorter: the suite runs on two processes (`pytest -n auto`), and on a busy machine a 4 s
lease expired while a page was stored, so the scheduler took a live run's tenant over.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from django.db.models import Count

from partner_portal.incidents import sync, tasks
from partner_portal.incidents.models import Incident
from partner_portal.microsoft.defender import parse_time
from tests.incidents.helpers import tid

LEASE_SECONDS = 8
SCHEDULE_SECONDS = 10.0
RECONNECT_SECONDS = 1
PAGE_SIZE = 100
WORKER_ENV = {
    "SYNC_LEASE_SECONDS": str(LEASE_SECONDS),
    "SYNC_RETRY_BACKOFF_SECONDS": "1",
    "MICROSOFT_HTTP_TIMEOUT": "3",
    # Scaled as the schedule is: a worker tries a lost broker again every second.
    "BROKER_RECONNECT_SECONDS": str(RECONNECT_SECONDS),
}
TABLE_FILE = os.environ.get("CHAOS_TABLE_FILE", "")


@dataclass
class Row:
    scenario: str
    lost: int
    duplicated: int
    stale: int
    extra_calls: int
    throttled_429: int
    recover_seconds: float
    workers_alive: str = ""


class OwnRedis:
    """A redis-server of our own, with AOF as in the compose file, that we may kill -9."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        self.cmd += ["--save", "", "--appendonly", "yes", "--dir", str(directory)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def client(self):
        import redis

        return redis.Redis(port=self.port)


def send_sync(app, url: str, tenant_pk: int, **kwargs) -> None:
    with app.connection_for_write(url) as connection:
        tasks.sync_tenant.apply_async(
            kwargs={"tenant_pk": tenant_pk, **kwargs}, connection=connection
        )


def tick(app, url: str) -> list[int]:
    """What beat's sync_all_tenants does, from here (beat itself is not under test)."""
    due = sync.sync_due_tenants()
    for pk in due:
        try:
            send_sync(app, url, pk)
        except Exception:  # noqa: BLE001 (the broker is down: beat would fail this tick too)
            return []
    return due


def differences(devcloud, tenant) -> tuple[int, int, int]:
    """(lost, duplicated, stale) of one tenant against devcloud's ground truth."""
    incidents = devcloud.incidents(tid(tenant))
    truth = {i["incidentId"]: parse_time(i["lastUpdateTime"]) for i in incidents}
    rows = Incident.objects.filter(tenant=tenant)
    stored = dict(rows.values_list("microsoft_id", "last_update_time"))
    duplicated = sum(
        c - 1
        for c in rows.values("microsoft_id").annotate(c=Count("pk")).values_list("c", flat=True)
    )
    lost = len(set(truth) - set(stored))
    stale = sum(1 for k, when in truth.items() if k in stored and stored[k] < when)
    return lost, duplicated, stale


def run_until_recovered(app, url, devcloud, tenants, *, started: float, limit: float):
    """Tick every SCHEDULE_SECONDS until every tenant equals devcloud; (seconds, last diff)."""
    next_tick = 0.0
    diff = (0, 0, 0)
    while True:
        now = time.monotonic()
        diff = tuple(map(sum, zip(*(differences(devcloud, t) for t in tenants), strict=True)))
        if diff == (0, 0, 0) and not busy(tenants):
            return now - started, diff
        if now - started > limit:
            return now - started, diff
        if now >= next_tick:
            tick(app, url)
            next_tick = now + SCHEDULE_SECONDS
        time.sleep(0.25)


def busy(tenants) -> bool:
    from partner_portal.tenants.models import Tenant

    return any(t.lease_held for t in Tenant.objects.filter(pk__in=[t.pk for t in tenants]))


def calls_and_429s(devcloud, tenants) -> tuple[int, int]:
    calls = throttled = 0
    for tenant in tenants:
        entries = devcloud.requests_log(tid(tenant))["entries"]
        listed = [e for e in entries if e["endpoint"] == "list_incidents"]
        calls += len(listed)
        throttled += sum(1 for e in listed if e.get("status") == 429)
    return calls, throttled


def reconnected_after(worker, when: float) -> float:
    """Seconds from `when` (time.time()) until the worker's log says it connected to the
    broker again (inf when it has not)."""
    for line in worker.lines:
        if "Connected to redis://" in line:
            logged = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007 (the worker's local time, as ours)
            if logged >= when - 0.001:  # the log's time is cut to the millisecond
                return max(logged - when, 0.0)
    return math.inf


def minimum_calls(devcloud, tenants) -> int:
    return sum(max(1, math.ceil(len(devcloud.incidents(tid(t))) / PAGE_SIZE)) for t in tenants)


def record(row: Row) -> Row:
    if TABLE_FILE:
        with open(TABLE_FILE, "a") as out:
            out.write(json.dumps(asdict(row)) + "\n")
    return row
