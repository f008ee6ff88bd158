"""Web under load: N technicians signed in to gunicorn, run as docker-compose.yml runs it.

    pip install -r requirements-bench.txt
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dashboard \\
        REDIS_URL=redis://127.0.0.1:6379/8 python bench/load.py [--users 50] [--seconds 60]

1. Uses bench/dashboard.py's data (1,000,000 incidents across 1,000 tenants; loaded first
   if missing) and adds its own technicians (`bench-load-N`, in a group that sees 50
   tenants and may act on incidents), deleted at the end.
2. Starts gunicorn with the arguments of the compose file's `web` command, bound to a free
   port on 127.0.0.1 (loopback only), and locust (headless, FastHttpUser) as the users.
3. Two bounded runs, each after every user has signed in (stats reset then):
   - capacity: the list pages (page 1, next page and a filter through htmx), no think
     time — requests per second, p95, and the gunicorn workers' CPU per request;
   - technicians: the whole day's mix (list, paging, filters, text search, incident
     pages, the summary) with ~2 s think time — p95 and errors as the users see them.
Prints each figure beside the goal of issue 18 and the ratio to it.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "bench-load-"
GROUP = "bench-load"
# Issue 18's goals.
GOAL_RPS = 100
GOAL_P95_MS = 300
GOAL_CPU_MS = 10


def compose_gunicorn_args() -> list[str]:
    """The gunicorn options of docker-compose.yml's web service, without --bind."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["web"]["command"]  # sh -c "migrate && exec gunicorn …"
    script = shlex.split(command)[-1]
    args = shlex.split(script.split("exec ", 1)[-1])
    assert args[0] == "gunicorn", args
    assert args[1] == "partner_portal.wsgi", args
    kept, skip = [], False
    for arg in args[2:]:
        if skip:
            skip = False
            continue
        if arg == "--bind":
            skip = True
            continue
        kept.append(arg)
    return kept


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_technicians(users: int, password_hash: str) -> None:
    from django.contrib.auth.models import Group, Permission, User

    from bench.dashboard import BENCH_GROUP

    remove_technicians()
    group = Group.objects.create(name=GROUP)
    group.tenants.set(Group.objects.get(name=BENCH_GROUP).tenants.all())
    group.permissions.add(Permission.objects.get(codename="act_on_incident"))
    # One hash for all: hashing a password 50 times would take the benchmark's first minute.
    made = User.objects.bulk_create(
        User(
            username=f"{PREFIX}{i}",
            email=f"tech{i}@msp.example",
            password=password_hash,
            is_staff=True,
        )
        for i in range(users)
    )
    group.user_set.add(*made)


def remove_technicians() -> None:
    from django.contrib.auth.models import Group, User

    User.objects.filter(username__startswith=PREFIX).delete()
    Group.objects.filter(name=GROUP).delete()


@dataclass
class Run:
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    cpu_ms: float  # gunicorn's CPU (all workers) per request


def worker_cpu(master: int) -> float:
    """CPU seconds used so far by gunicorn's master and workers."""
    import psutil

    total = 0.0
    process = psutil.Process(master)
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def run_locust(
    *, host: str, users: int, seconds: int, think: float, mix: str, env: dict, master: int
) -> tuple[dict, float]:
    """One locust run: its stats by request name (from the moment every user had signed in)
    and gunicorn's CPU milliseconds per request over the same time."""
    out = Path(tempfile.mkdtemp(prefix="bench-load-"))
    ready = out / "ready"
    command = [
        *(sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py")),
        *("--headless", "--users", str(users), "--spawn-rate", str(max(1, users // 5))),
        # A bound in case the sign-ins never finish; the run stops itself before.
        *("--run-time", f"{seconds + 300}s", "--stop-timeout", "5"),
        *("--host", host, "--csv", str(out / "stats"), "--only-summary"),
        *("--loglevel", "WARNING"),
    ]
    locust_env = {
        **env,
        "LOAD_USERS_PREFIX": PREFIX,
        "LOAD_USERS": str(users),
        "LOAD_SECONDS": str(seconds),
        "LOAD_READY_FILE": str(ready),
        "LOAD_THINK_SECONDS": str(think),
        "LOAD_MIX": mix,
    }
    locust = subprocess.Popen(command, env=locust_env, stdout=subprocess.DEVNULL)
    while not ready.exists() and locust.poll() is None:
        time.sleep(0.05)
    cpu_from = worker_cpu(master)
    locust.wait(timeout=seconds + 400)
    cpu = worker_cpu(master) - cpu_from
    with (out / "stats_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    served = int(rows["Aggregated"]["Request Count"])
    return rows, cpu * 1000 / max(1, served)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60, help="per run, after sign-in")
    parser.add_argument("--think", type=float, default=2.0, help="seconds, the technicians' run")
    parser.add_argument(
        "--runs", default="capacity,technicians", help="which runs (comma-separated)"
    )
    parser.add_argument(
        "--gunicorn",
        default="",
        help="extra gunicorn arguments (e.g. '--workers 4'), after the compose file's",
    )
    args = parser.parse_args()

    from bench.dashboard import setup_django

    var_dir = Path(tempfile.gettempdir()) / "partner-portal-bench"
    setup_django(var_dir)
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from bench import dashboard

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    if not dashboard.loaded():
        dashboard.load(6)
    password = "load-" + os.urandom(8).hex()
    make_technicians(args.users, make_password(password))

    port = free_port()
    gunicorn_args = compose_gunicorn_args() + shlex.split(args.gunicorn)
    env = {
        **os.environ,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "VAR_DIR": str(var_dir),
        "LOAD_PASSWORD": password,
    }
    log = open(var_dir / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "partner_portal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        *gunicorn_args,
    ]
    print(f"gunicorn {' '.join(command[3:])}")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    runs: list[Run] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                sys.exit(f"gunicorn exited: see {var_dir / 'gunicorn.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        host = f"http://127.0.0.1:{port}"
        for name, think, mix in [("capacity", 0.0, "list"), ("technicians", args.think, "mixed")]:
            if name not in args.runs.split(","):
                continue
            rows, cpu_ms = run_locust(
                host=host,
                users=args.users,
                seconds=args.seconds,
                think=think,
                mix=mix,
                env=env,
                master=server.pid,
            )
            total = rows["Aggregated"]
            runs.append(
                Run(
                    name=name,
                    requests=int(total["Request Count"]),
                    failures=int(total["Failure Count"]),
                    rps=float(total["Requests/s"]),
                    p50=float(total["50%"]),
                    p95=float(total["95%"]),
                    cpu_ms=cpu_ms,
                )
            )
            for row_name, row in rows.items():
                if row_name != "Aggregated":
                    print(
                        f"  {name:12} {row_name:28} n={row['Request Count']:>6} "
                        f"p50={row['50%']:>5} ms p95={row['95%']:>5} ms "
                        f"failures={row['Failure Count']}"
                    )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        remove_technicians()
    print(f"\nLoad average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'run':12} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'CPU ms/req':>10}"
    )
    for run in runs:
        print(
            f"{run.name:12} {run.requests:8d} {run.failures:6d} {run.rps:7.1f} {run.p50:7.0f} "
            f"{run.p95:7.0f} {run.cpu_ms:10.1f}"
        )
    by_name = {run.name: run for run in runs}
    print("\nAgainst issue 18's goals (ratio ≥ 1 meets the goal):")
    checks = []
    if "capacity" in by_name:
        capacity = by_name["capacity"]
        checks += [
            ("capacity, list pages: req/s", capacity.rps, GOAL_RPS, capacity.rps / GOAL_RPS),
            (
                "CPU per list page, ms",
                capacity.cpu_ms,
                GOAL_CPU_MS,
                GOAL_CPU_MS / max(capacity.cpu_ms, 0.01),
            ),
        ]
    if "technicians" in by_name:
        technicians = by_name["technicians"]
        checks.append(
            (
                f"{args.users} technicians, {args.think:g} s think time: p95 ms",
                technicians.p95,
                GOAL_P95_MS,
                GOAL_P95_MS / max(technicians.p95, 0.01),
            )
        )
    ok = all(run.failures == 0 for run in runs)
    for label, value, goal, ratio in checks:
        ok &= ratio >= 1
        print(f"  {label:45} {value:8.1f}  goal {goal:>4}  ratio {ratio:5.2f}")
    print("All goals met." if ok else "Some goals were missed.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
