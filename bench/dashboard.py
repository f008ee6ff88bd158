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

Targets (issues 6 and 18): p95 < 100 ms for each case, the summary's both afresh and from
its cache, and a staff member's text search; a few queries per page (MAX_QUERIES), the same
on a deep page as on page 1. "goal/p95" ≥ 1 meets it.
"""

from __future__ import annotations

import argparse
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
# Issue 6 said 8; the page has since gained the views (one query for all their counts), the
# permission to act (one) and the failing-channels banner (one): session read and write,
# user, page, saved views, counts, tenant options, banner, permission = 9-10 (a staff
# search: its tenants, 11).
MAX_QUERIES = 11

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


# Its own rows, and nothing else: tenants under this domain, these users and this group.
BENCH_DOMAIN = "bench-dashboard.example"
BENCH_USERS = ("bench-root", "bench-staff")
BENCH_GROUP = "bench-staff"


def _pick(values: list[str], hash_sql: str) -> str:
    """SQL choosing one of `values` by a hash of the row (the same in both tables)."""
    array = "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
    return f"({array})[1 + mod(abs({hash_sql}), {len(values)})]"


def _weighted(choices: list[tuple], hash_sql: str, column: int = 0) -> str:
    """SQL CASE choosing by weight (the last item of each choice, summing to 100)."""
    parts, upto = [], 0
    for choice in choices[:-1]:
        upto += choice[-1]
        parts.append(f"WHEN mod(abs({hash_sql}), 100) < {upto} THEN {choice[column]!r}")
    return f"CASE {' '.join(parts)} ELSE {choices[-1][column]!r} END"


def bench_tenant_pks() -> list[int]:
    from partner_portal.tenants.models import Tenant

    return list(
        Tenant.objects.filter(primary_domain__endswith=f".{BENCH_DOMAIN}")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def clean_up() -> None:
    """Delete the benchmark's own rows (a million incidents: in SQL, not through Django's
    cascade, which would read them all into Python)."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    pks = bench_tenant_pks()
    if pks:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for table in ("incidents_alert", "incidents_incidentchange"):
                cursor.execute(
                    f"DELETE FROM {table} WHERE incident_id IN (SELECT id FROM "  # noqa: S608
                    "incidents_incident WHERE tenant_id = ANY(%s))",
                    [pks],
                )
            for table in (
                "incidents_incident",
                "incidents_incidentcount",
                "incidents_incidentdaycount",
                "tenants_tenant_groups",
            ):
                cursor.execute(f"DELETE FROM {table} WHERE tenant_id = ANY(%s)", [pks])  # noqa: S608
        from partner_portal.tenants.models import Tenant

        Tenant.objects.filter(pk__in=pks).delete()
        print(f"Deleted the benchmark's earlier data in {time.perf_counter() - started:.1f} s")
    Group.objects.filter(name=BENCH_GROUP).delete()
    User.objects.filter(username__in=BENCH_USERS).delete()


def load(seed: int) -> None:
    """Load 1,000 tenants and 1,000,000 incidents (and their alerts) with INSERT … SELECT
    FROM generate_series: PostgreSQL makes the rows itself, nothing travels through Python.
    Every choice is a hash of the row's number and the seed, so a load is reproducible."""
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from partner_portal.incidents import counters
    from partner_portal.tenants.models import Tenant

    clean_up()
    rng = random.Random(seed)
    started = time.perf_counter()
    tenants = Tenant.objects.bulk_create(
        Tenant(
            display_name=f"Customer {i:04d} {rng.choice(['Ltd', 'GmbH', 'Inc.', 'BV', 'SA'])}",
            primary_domain=f"customer{i:04d}.{BENCH_DOMAIN}",
            consent_state=Tenant.ConsentState.CONSENTED,
        )
        for i in range(TENANTS)
    )
    staff_group = Group.objects.create(name=BENCH_GROUP)
    staff_group.tenants.set(tenants[:: TENANTS // STAFF_TENANTS])
    User.objects.create_superuser("bench-root", "root@bench.example", None)
    User.objects.create_user("bench-staff", "staff@bench.example", None, is_staff=True).groups.add(
        staff_group
    )
    tenant_ids = [t.pk for t in tenants]

    def h(salt: int) -> str:  # a hash of the incident's number
        return f"hashint8(g::bigint * 1000003 + {seed * 7919 + salt})"

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("SELECT nextval('incidents_incident_id_seq')")
        first_pk = cursor.fetchone()[0]
        cursor.execute("SELECT setval('incidents_incident_id_seq', %s)", [first_pk + INCIDENTS])
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('incidents_incident', 'incidents_incidentsearch', 'incidents_alert') "
            "AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
        indexes = cursor.fetchall()
        # PostgreSQL's bulk-load advice: load without indexes and foreign keys (Django's
        # are deferred, so an INSERT would queue one check per row), then rebuild them.
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid IN "
            "('incidents_incident'::regclass, 'incidents_incidentsearch'::regclass, "
            "'incidents_alert'::regclass) "
            "AND contype IN ('f', 'u')"
        )
        constraints = cursor.fetchall()
        for table, name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        now = datetime.now(UTC).replace(microsecond=0)
        severity = _weighted(SEVERITIES, h(1))
        rank = _weighted(SEVERITIES, h(1), column=1)
        status = _weighted(STATUSES, h(2))
        name = _pick(INCIDENT_NAMES, h(3))
        device = f"'desktop-' || lpad(to_hex(mod(abs({h(4)}), 1048576)), 5, '0')"
        user = f"{_pick(FIRST, h(5))} || '.' || {_pick(LAST, h(6))} || mod(abs({h(7)}), 100)"
        n_alerts = f"(ARRAY[1, 1, 2, 3])[1 + mod(abs({h(8)}), 4)]"
        title = _pick(ALERT_TITLES, f"hashint8(g::bigint * 31 + a + {seed})")
        # Alert titles by incident number and alert number, the same in both tables.
        titles = f"(SELECT string_agg({title}, ' ') FROM generate_series(1, {n_alerts}) a)"  # noqa: S608
        updated = f"%(now)s - make_interval(secs => mod(abs({h(9)}), 365 * 86400))"
        created = f"{updated} - make_interval(secs => mod(abs({h(10)}), 10 * 86400))"
        tenant = f"(%(tenants)s::bigint[])[1 + mod(abs({h(11)}), {TENANTS})]"
        cursor.execute(
            f"""
            INSERT INTO incidents_incident (
                id, tenant_id, microsoft_id, name, severity, severity_rank, status,
                classification, determination, assigned_to, tags, comments, created_time,
                last_update_time, portal_url, alert_count, raw, text_repaired, synced_at)
            SELECT %(first)s + g, {tenant}, 100000 + g, {name}, {severity}, {rank}, {status},
                CASE WHEN {status} = 'Resolved' THEN 'TruePositive' ELSE 'Unknown' END,
                CASE WHEN {status} = 'Resolved' THEN 'Malware' ELSE 'NotAvailable' END,
                CASE WHEN mod(abs({h(12)}), 2) = 0
                     THEN {_pick(FIRST, h(13))} || '@msp.example' ELSE '' END,
                '[]', '[]', {created}, {updated},
                'https://security.microsoft.com/incidents/' || (100000 + g), {n_alerts},
                jsonb_build_object('incidentId', 100000 + g, 'incidentName', {name}),
                false, %(now)s
            FROM generate_series(0, {INCIDENTS - 1}) g
            """,  # noqa: S608 (the benchmark's own constants)
            {"first": first_pk, "now": now, "tenants": tenant_ids},
        )
        # Their search words (store.search_text), by the same hashes.
        cursor.execute(
            f"""
            INSERT INTO incidents_incidentsearch (incident_id, tenant_id, text)
            SELECT %(first)s + g, {tenant},
                lower({name} || ' ' || {titles} || ' ' || {device} || ' ' || {user})
            FROM generate_series(0, {INCIDENTS - 1}) g
            """,  # noqa: S608
            {"first": first_pk, "tenants": tenant_ids},
        )
        incidents_loaded = time.perf_counter()
        cursor.execute(
            f"""
            INSERT INTO incidents_alert (
                incident_id, microsoft_id, microsoft_id_hash, title, description, severity,
                category, status, detection_source, service_source, mitre_techniques,
                first_activity, last_activity, devices, entities, raw)
            SELECT %(first)s + g, 'da' || lpad((%(first)s + g)::text, 12, '0') || '_' || a,
                encode(sha256(convert_to('da' || lpad((%(first)s + g)::text, 12, '0') || '_'
                    || a, 'UTF8')), 'hex'),
                {title}, '', {severity}, 'InitialAccess', 'New', 'WindowsDefenderAv',
                'MicrosoftDefenderATP', '["T1566.001"]', {created}, {created},
                jsonb_build_array(jsonb_build_object('deviceDnsName', {device})),
                jsonb_build_array(jsonb_build_object('entityType', 'User', 'accountName', {user})),
                '{{}}'
            FROM generate_series(0, {INCIDENTS - 1}) g, generate_series(1, {n_alerts}) a
            """,  # noqa: S608
            {"first": first_pk, "now": now},
        )
        alerts = cursor.rowcount
        alerts_loaded = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        for table, name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        indexed = time.perf_counter()
        rows = counters.rebuild(tenant_ids)
        counted = time.perf_counter()
        for table in (
            "incidents_incident",
            "incidents_incidentsearch",
            "incidents_alert",
            "incidents_incidentdaycount",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("ANALYZE")
    finished = time.perf_counter()
    print(
        f"Loaded {INCIDENTS:,} incidents and {alerts:,} alerts across {TENANTS:,} "
        f"tenants in {finished - started:.1f} s (incidents {incidents_loaded - started:.1f} s,"
        f" alerts {alerts_loaded - incidents_loaded:.1f} s, {len(indexes)} indexes + "
        f"{len(constraints)} constraints {indexed - alerts_loaded:.1f} s, the summary's "
        f"counts ({rows:,} rows, rebuild_incident_counts) {counted - indexed:.1f} s, "
        f"vacuum/analyze {finished - counted:.1f} s)"
    )


def loaded() -> bool:
    from django.contrib.auth.models import User

    from partner_portal.incidents.models import Incident

    pks = bench_tenant_pks()
    if len(pks) != TENANTS or not User.objects.filter(username="bench-staff").exists():
        return False
    return Incident.objects.filter(tenant__in=pks[:10]).count() > INCIDENTS / TENANTS * 5


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

    # Not the session's first request: that one also looks up the user's time zone.
    client.get(url, params)
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

    from partner_portal.gc_freeze import freeze_startup_objects

    freeze_startup_objects()  # as a started web process does (partner_portal/wsgi.py)
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
        ("staff: text search, common word", staff, {"q": "powershell"}, 2_000),
        ("staff: text search, one user", staff, {"q": "julia.novak42"}, 10),
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
        f"{'queries':>8} {'rows':>5} {'goal/p95':>8}  ok"
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
                f"{p95(m.cpu):8.1f} {p95(m.sql):8.1f} {m.queries:8d} {m.rows:5d} "
                f"{P95_TARGET_MS / p95(m.wall):8.2f}  {'yes' if ok else 'NO'}"
            )
        # A deep page may need no more queries than the first (the first also counts the
        # views and reads the form's tenants).
        if counts[-1] > counts[0]:
            all_ok = False
            print(f"{'':34} more queries on the deep page: {counts}")

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
                f"{p95(m.cpu):8.1f} {p95(m.sql):8.1f} {m.queries:8d} {m.rows:5d} "
                f"{P95_TARGET_MS / p95(m.wall):8.2f}  {'yes' if ok else 'NO'}"
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
    parser.add_argument("--incidents", type=int, default=INCIDENTS, help="to load (1,000,000)")
    args = parser.parse_args()
    globals()["INCIDENTS"] = args.incidents

    var_dir = Path(tempfile.gettempdir()) / "partner-portal-bench"
    setup_django(var_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    if args.reload or not loaded():
        load(args.seed)
    else:
        print("Reusing the loaded data (--reload to start over).")
    ok = run(args.requests, summary_only=args.summary_only)
    if not (args.no_export or args.summary_only):
        export_throughput(args.export_as)
    print("\nAll targets met." if ok else "\nSome targets were missed (marked NO).")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
