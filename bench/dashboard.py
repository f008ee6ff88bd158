"""Dashboard benchmark: 1,000,000 incidents across 1,000 tenants on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dashboard python bench/dashboard.py

1. Migrates the database and bulk-loads the data with COPY (skipped when it is already
   there; --reload starts over). Indexes are dropped during the load and rebuilt after.
2. Measures the incident list through the real stack (Django's test client: middleware,
   session, access rule, filters, template; DEBUG off) for each case, on page 1 and on a
   deep page: p50/p95 wall time over --requests requests, the p95 of the process's CPU time
   and of the time spent in PostgreSQL (on a busy machine wall time also counts waiting
   for a CPU), and the SQL queries per request.

3. Measures the summary page the same way (superuser, and the staff user who sees 50
   tenants), counted afresh on every request and from the cache (--summary-only: just these).

Targets (issue 6): p95 < 100 ms for each case; at most 8 queries per page, the same on a
deep page as on page 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANTS = 1_000
INCIDENTS = 1_000_000
STAFF_TENANTS = 50
P95_TARGET_MS = 100
MAX_QUERIES = 8

INCIDENT_NAMES = [
    "Multi-stage incident involving Initial access & Execution",
    "Ransomware activity on one endpoint",
    "Suspicious PowerShell command line",
    "Phishing email delivered and clicked",
    "Unfamiliar sign-in properties",
    "Impossible travel activity",
    "Credential theft via LSASS access",
    "Mass download by a single user",
    "Suspicious inbox forwarding rule",
    "Malware detected in a SharePoint file",
    "Anonymous IP address sign-in",
    "Business email compromise attempt",
    "Emerging threat activity group detected",
    "Password spray attack",
    "Suspicious OAuth app consent",
]
ALERT_TITLES = [
    "Suspicious process injection observed",
    "Ransomware behavior detected in the file system",
    "Email messages containing malicious URL removed after delivery",
    "User accessed a link in a phishing email",
    "Suspicious sign-in from an anonymous IP",
    "A potentially malicious URL click was detected",
    "Suspicious LDAP query",
    "Possible credential dumping",
]
SEVERITIES = [("High", 4, 10), ("Medium", 3, 30), ("Low", 2, 35), ("Informational", 1, 20)]
SEVERITIES += [("UnSpecified", 0, 5)]
STATUSES = [("Active", 25), ("InProgress", 10), ("Resolved", 60), ("Redirected", 5)]
FIRST = ["anna", "ben", "chen", "dara", "emil", "fatima", "george", "hana", "ivan", "julia"]
LAST = ["smith", "jones", "garcia", "müller", "rossi", "kowalski", "novak", "tanaka"]


def setup_django(var_dir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partner_portal.settings")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 50)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    os.environ["VAR_DIR"] = str(var_dir)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL=postgres://… (the benchmark needs PostgreSQL).")
    import django

    django.setup()


def weighted(choices: list[tuple], rng: random.Random) -> list:
    return rng.choices(choices, weights=[c[-1] for c in choices], k=INCIDENTS)


def load(rng: random.Random) -> None:
    """Truncate and bulk-load tenants, groups, incidents and alerts with COPY."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from partner_portal.tenants.models import Tenant

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tenants_tenant RESTART IDENTITY CASCADE")
    Group.objects.filter(name="bench-staff").delete()
    User.objects.filter(username__in=["bench-root", "bench-staff"]).delete()

    started = time.perf_counter()
    tenants = Tenant.objects.bulk_create(
        Tenant(
            display_name=f"Customer {i:04d} {rng.choice(['Ltd', 'GmbH', 'Inc.', 'BV', 'SA'])}",
            primary_domain=f"customer{i:04d}.onmicrosoft.com",
            consent_state=Tenant.ConsentState.CONSENTED,
        )
        for i in range(TENANTS)
    )
    staff_group = Group.objects.create(name="bench-staff")
    staff_group.tenants.set(tenants[:: TENANTS // STAFF_TENANTS])
    User.objects.create_superuser("bench-root", "root@bench.example", None)
    User.objects.create_user("bench-staff", "staff@bench.example", None, is_staff=True).groups.add(
        staff_group
    )
    tenant_ids = [t.pk for t in tenants]

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('incidents_incident', 'incidents_alert') AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
        indexes = cursor.fetchall()
        # PostgreSQL's bulk-load advice: load without indexes and foreign keys (Django's
        # are deferred, so a COPY would queue one check per row), then rebuild them.
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid IN "
            "('incidents_incident'::regclass, 'incidents_alert'::regclass) "
            "AND contype IN ('f', 'u')"
        )
        constraints = cursor.fetchall()
        for table, name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        psycopg = cursor.connection
        now = datetime.now(UTC).replace(microsecond=0)
        severities = weighted(SEVERITIES, rng)
        statuses = weighted(STATUSES, rng)
        incident_columns = (
            "id, tenant_id, microsoft_id, name, severity, severity_rank, status, "
            "classification, determination, assigned_to, tags, comments, created_time, "
            "last_update_time, portal_url, alert_count, search_text, raw, synced_at"
        )
        alert_columns = (
            "incident_id, microsoft_id, title, description, severity, category, status, "
            "detection_source, service_source, mitre_techniques, first_activity, "
            "last_activity, devices, entities, raw"
        )
        alert_rows = []
        with psycopg.cursor() as raw_cursor:
            copy_sql = f"COPY incidents_incident ({incident_columns}) FROM STDIN"
            with raw_cursor.copy(copy_sql) as copy:
                for i in range(INCIDENTS):
                    pk = i + 1
                    severity, rank, _ = severities[i]
                    status = statuses[i][0]
                    updated = now - timedelta(seconds=rng.randrange(365 * 86400))
                    created = updated - timedelta(seconds=rng.randrange(10 * 86400))
                    name = rng.choice(INCIDENT_NAMES)
                    device = f"desktop-{rng.randrange(16**5):05x}"
                    user = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(100)}"
                    n_alerts = rng.choice((1, 1, 2, 3))
                    titles = [rng.choice(ALERT_TITLES) for _ in range(n_alerts)]
                    search = " ".join([name, *titles, device, user]).lower()
                    resolved = status == "Resolved"
                    copy.write_row(
                        (
                            pk,
                            rng.choice(tenant_ids),
                            100_000 + i,
                            name,
                            severity,
                            rank,
                            status,
                            "TruePositive" if resolved else "Unknown",
                            "Malware" if resolved else "NotAvailable",
                            f"{rng.choice(FIRST)}@msp.example" if rng.random() < 0.5 else "",
                            "[]",
                            "[]",
                            created,
                            updated,
                            f"https://security.microsoft.com/incidents/{100_000 + i}",
                            n_alerts,
                            search,
                            json.dumps({"incidentId": 100_000 + i, "incidentName": name}),
                            now,
                        )
                    )
                    for n, title in enumerate(titles):
                        alert_rows.append((pk, n, title, severity, created, device, user))
            incidents_loaded = time.perf_counter()
            copy_sql = f"COPY incidents_alert ({alert_columns}) FROM STDIN"
            with raw_cursor.copy(copy_sql) as copy:
                for pk, n, title, severity, created, device, user in alert_rows:
                    copy.write_row(
                        (
                            pk,
                            f"da{pk:012d}_{n}",
                            title,
                            "",
                            severity,
                            "InitialAccess",
                            "New",
                            "WindowsDefenderAv",
                            "MicrosoftDefenderATP",
                            '["T1566.001"]',
                            created,
                            created,
                            json.dumps([{"deviceDnsName": device}]),
                            json.dumps([{"entityType": "User", "accountName": user}]),
                            "{}",
                        )
                    )
        alerts_loaded = time.perf_counter()
        cursor.execute("SELECT setval('incidents_incident_id_seq', %s)", [INCIDENTS])
        for _, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        indexed = time.perf_counter()
        cursor.execute("VACUUM ANALYZE incidents_incident")
        cursor.execute("VACUUM ANALYZE incidents_alert")
        cursor.execute("ANALYZE")
    finished = time.perf_counter()
    print(
        f"Loaded {INCIDENTS:,} incidents and {len(alert_rows):,} alerts across {TENANTS:,} "
        f"tenants in {finished - started:.1f} s (incidents COPY "
        f"{incidents_loaded - started:.1f} s, alerts COPY {alerts_loaded - incidents_loaded:.1f}"
        f" s, {len(indexes)} indexes + {len(constraints)} constraints "
        f"{indexed - alerts_loaded:.1f} s, vacuum/analyze "
        f"{finished - indexed:.1f} s)"
    )


def loaded() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'incidents_incident'")
        row = cursor.fetchone()
    from django.contrib.auth.models import User

    return (
        bool(row and row[0] >= INCIDENTS * 0.99)
        and User.objects.filter(username="bench-staff").exists()
    )


def deep_cursor(user, params: dict, depth: int) -> str | None:
    """The cursor of the row `depth` rows into the filtered, sorted list (like page
    depth/50 reached by clicking "Next"), found once with OFFSET."""
    from django.test import RequestFactory

    from partner_portal.incidents import dashboard
    from partner_portal.incidents.filters import IncidentFilter

    request = RequestFactory().get("/", params)
    request.user = user
    filterset = IncidentFilter(
        request.GET, queryset=dashboard.visible_incidents(user), request=request
    )
    fields, descending = dashboard.parse_sort(filterset.chosen_sort)
    queryset = filterset.qs.order_by(*[f"-{f}" if descending else f for f in fields])
    row = queryset[depth : depth + 1].first()
    return dashboard.encode_cursor(row, fields) if row else None


@dataclass
class Measured:
    wall: list[float]  # ms per request, as a user waits for it
    cpu: list[float]  # ms of this process's CPU per request (excludes waiting for a CPU)
    sql: list[float]  # ms per request spent waiting for PostgreSQL
    queries: int
    rows: int


def measure(client, url: str, params: dict, requests: int) -> Measured:
    from django.db import connection

    queries: list[str] = []
    sql_time = [0.0]

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    def clock(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_time[0] += (time.perf_counter() - started) * 1000

    with connection.execute_wrapper(count):
        response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    rows = response.content.count(b"<tr data-incident=")
    for _ in range(3):
        client.get(url, params)
    result = Measured([], [], [], len(queries), rows)
    with connection.execute_wrapper(clock):
        for _ in range(requests):
            sql_time[0] = 0.0
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(url, params)
            result.cpu.append((time.process_time() - cpu_started) * 1000)
            result.wall.append((time.perf_counter() - started) * 1000)
            result.sql.append(sql_time[0])
            assert response.status_code == 200
    return result


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run(requests: int, *, summary_only: bool = False) -> bool:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    root = User.objects.get(username="bench-root")
    staff = User.objects.get(username="bench-staff")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id FROM incidents_incident GROUP BY tenant_id "
            "ORDER BY count(*) DESC LIMIT 1"
        )
        tenant_id = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM incidents_incident WHERE tenant_id = %s", [tenant_id])
        tenant_rows = cursor.fetchone()[0]
    cases = [
        ("no filter", root, {}, 500_000),
        ("one tenant", root, {"tenant": tenant_id}, tenant_rows - 30),
        ("severity=High + status=Active", root, {"severity": "High", "status": "Active"}, 20_000),
        ("text search, common word", root, {"q": "powershell"}, 50_000),
        ("text search, one user", root, {"q": "julia.novak42"}, 250),
        ("staff: 50 of 1,000 tenants", staff, {}, 40_000),
        ("staff: severity=High", staff, {"severity": "High"}, 4_000),
        ("sort by severity", root, {"sort": "-severity"}, 500_000),
        ("sort by created, oldest first", root, {"sort": "created"}, 500_000),
    ]
    url = reverse("incidents:list")
    if summary_only:
        cases = []
    # Other processes on the machine inflate the tail: say how busy it was.
    print(f"\nLoad average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'case':34} {'page':>6} {'p50 ms':>8} {'p95 ms':>8} {'p95 cpu':>8} {'p95 sql':>8} "
        f"{'queries':>8} {'rows':>5}  ok"
    )
    all_ok = True
    for name, user, params, depth in cases:
        client = Client()
        client.force_login(user)
        cursor = deep_cursor(user, params, depth)
        pages = [("1", params)]
        if cursor:
            pages.append((f"~{depth // 50 + 1:,}", {**params, "after": cursor}))
        counts = []
        for label, page_params in pages:
            m = measure(client, url, page_params, requests)
            counts.append(m.queries)
            ok = p95(m.wall) < P95_TARGET_MS and m.queries <= MAX_QUERIES
            all_ok &= ok
            print(
                f"{name:34} {label:>6} {statistics.median(m.wall):8.1f} {p95(m.wall):8.1f} "
                f"{p95(m.cpu):8.1f} {p95(m.sql):8.1f} {m.queries:8d} {m.rows:5d}  "
                f"{'yes' if ok else 'NO'}"
            )
        if len(set(counts)) > 1:
            all_ok = False
            print(f"{'':34} queries differ between pages: {counts}")

    # The summary page: open incidents by severity and per tenant, the 30-day chart.
    # "fresh": the cache off, every request counts (what the first request of a minute
    # costs, per set of visible tenants); "cached": the other requests of that minute.
    from django.test import override_settings

    summary_url = reverse("incidents:summary")
    for name, user in [("summary: superuser", root), ("summary: staff, 50 tenants", staff)]:
        client = Client()
        client.force_login(user)
        for label, seconds in [("fresh", 0), ("cached", 60)]:
            with override_settings(DASHBOARD_SUMMARY_CACHE_SECONDS=seconds):
                client.get(summary_url)  # fills the cache: the queries counted are a hit's
                m = measure(client, summary_url, {}, requests)
            ok = p95(m.wall) < P95_TARGET_MS and m.queries <= MAX_QUERIES
            all_ok &= ok
            print(
                f"{name:34} {label:>6} {statistics.median(m.wall):8.1f} {p95(m.wall):8.1f} "
                f"{p95(m.cpu):8.1f} {p95(m.sql):8.1f} {m.queries:8d} {m.rows:5d}  "
                f"{'yes' if ok else 'NO'}"
            )

    if summary_only:
        return all_ok
    # Not targets, for the record: the htmx partial and the new-since poll.
    client = Client()
    client.force_login(root)
    extra = [
        ("htmx partial (no filter)", url, {}, {"HTTP_HX_REQUEST": "true"}),
        (
            "new-since poll",
            reverse("incidents:new_count"),
            {"since": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()},
            {},
        ),
    ]
    print()
    for name, target, params, headers in extra:
        client.get(target, params, **headers)
        timings = []
        for _ in range(max(5, requests // 5)):
            started = time.perf_counter()
            client.get(target, params, **headers)
            timings.append((time.perf_counter() - started) * 1000)
        print(f"{name:34} {'':>6} {statistics.median(timings):8.1f} {p95(timings):8.1f}")
    print(f"\nLoad average after the run: {os.getloadavg()[0]:.1f}")
    return all_ok


def export_throughput(username: str) -> None:
    import resource

    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(User.objects.get(username=username))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get(reverse("incidents:export"))
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"\nCSV export ({username}, {lines - 1:,} rows): {elapsed:.1f} s, "
        f"{(lines - 1) / elapsed:,.0f} rows/s, peak RSS grew {(after - before) / 1024:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reload", action="store_true", help="drop and reload the data")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per case")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-export", action="store_true", help="skip the export run")
    parser.add_argument(
        "--summary-only", action="store_true", help="measure only the summary page (no export)"
    )
    parser.add_argument(
        "--export-as",
        choices=["bench-staff", "bench-root"],
        default="bench-staff",
        help="whose export to stream (bench-root: all 1,000,000 rows)",
    )
    args = parser.parse_args()

    var_dir = Path(tempfile.gettempdir()) / "partner-portal-bench"
    setup_django(var_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    if args.reload or not loaded():
        load(random.Random(args.seed))
    else:
        print("Reusing the loaded data (--reload to start over).")
    ok = run(args.requests, summary_only=args.summary_only)
    if not (args.no_export or args.summary_only):
        export_throughput(args.export_as)
    print("\nAll targets met." if ok else "\nSome targets were missed (marked NO).")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
