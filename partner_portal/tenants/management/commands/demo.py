"""`python manage.py demo`: the whole portal on one machine, with nothing to install or configure.

1. Migrate the database, create the cache table, create (or reset) the demo staff user.
2. Start devcloud, the Microsoft emulator, when it is importable; wait for `devcloud ready`;
   register the portal's demo app in it through its control API.
3. Start the web server, a Celery worker and Celery beat, pointed at devcloud through the
   MICROSOFT_* environment variables.
4. Show every child's output prefixed by its name; on Ctrl-C or SIGTERM (or when a child dies)
   stop them all: SIGTERM to each process group, a grace period, then SIGKILL.

Each child runs in its own process group: the terminal's Ctrl-C reaches only this process,
which then stops the children in order, and killing a group also reaches the grandchildren.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_USERNAME = "demo"
DEVCLOUD_READY_TIMEOUT = 90
BANNER_EVERY_SECONDS = 300
MANAGE_PY = str(Path(settings.BASE_DIR) / "manage.py")

# Run in a child interpreter so that this process never imports devcloud (a foreign system:
# the portal and the emulator share no code). The arguments arrive on stdin, not in argv,
# because argv is visible to every user of the machine and carries the client secret.
REGISTER_APP = """
import json, sys
from devcloud.client import DevCloud
a = json.load(sys.stdin)
dc = DevCloud(a["base_url"], a["ca_file"])
dc.create_app(
    client_id=a["client_id"],
    display_name=a["display_name"],
    secrets=[{"value": a["secret"]}],
    redirect_uris=a["redirect_uris"],
    required_permissions=a["required_permissions"],
)
known = {t["tenant_id"] for t in dc.tenants()}
for tid in a.get("consented_tenants", []):
    if tid in known:
        dc.set_consent(tid, a["client_id"])
"""


@dataclass
class Child:
    """One supervised process: its output is copied line by line with a name prefix."""

    name: str
    proc: subprocess.Popen[bytes]
    reader: threading.Thread | None = None
    lines: list[str] = field(default_factory=list)  # kept only until `ready` is seen
    ready: threading.Event = field(default_factory=threading.Event)


class Supervisor:
    def __init__(self, out: IO[str], *, stop_timeout: float) -> None:
        self.out = out
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.write_lock = threading.Lock()
        self.width = len("devcloud") + 1

    def say(self, text: str) -> None:
        with self.write_lock:
            self.out.write(text + "\n")
            self.out.flush()

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        ready_marker: str | None = None,
    ) -> Child:
        proc = subprocess.Popen(  # noqa: S603 (argv is built here, not from input)
            argv,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        child = Child(name=name, proc=proc)
        child.reader = threading.Thread(
            target=self._copy_output, args=(child, ready_marker), name=f"demo-{name}", daemon=True
        )
        self.children.append(child)
        child.reader.start()
        return child

    def _copy_output(self, child: Child, ready_marker: str | None) -> None:
        prefix = f"{child.name:<{self.width}}| "
        for raw in iter(child.proc.stdout.readline, b""):  # type: ignore[union-attr]
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if ready_marker is not None and not child.ready.is_set():
                child.lines.append(line)
                if line.strip() == ready_marker:
                    child.ready.set()
            self.say(prefix + line)

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def wait(self, condition: threading.Event, timeout: float) -> bool:
        """Wait for `condition`; False on timeout, on a stop request or when a child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition.wait(0.2):
                return True
            if self.stop_requested.is_set() or self.exited():
                return False
        return False

    def stop_all(self) -> None:
        """SIGTERM every process group, wait up to stop_timeout, then SIGKILL what is left."""
        running = [c for c in self.children if c.proc.poll() is None]
        if running:
            self.say(f"Stopping {', '.join(c.name for c in running)}…")
        for child in reversed(running):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in {self.stop_timeout:g} s: killing it")
        # Also sweeps grandchildren that outlived their parent (they keep its group).
        for child in self.children:
            _signal_group(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signum)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = (
        "Run the portal with a Celery worker, beat and devcloud (the Microsoft emulator) "
        "on this machine, with no server to install. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web server port (8000)")
        parser.add_argument(
            "--devcloud-port", type=int, default=8443, help="devcloud's HTTPS port (8443)"
        )
        parser.add_argument(
            "--devcloud-http-port", type=int, default=8444, help="devcloud's HTTP port (8444)"
        )
        parser.add_argument("--no-devcloud", action="store_true", help="do not start devcloud")
        parser.add_argument(
            "--verbose", action="store_true", help="worker and beat log at INFO, not WARNING"
        )
        parser.add_argument("--worker-threads", type=int, default=4, help="Celery threads (4)")
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=15.0,
            help="seconds each process gets to stop before it is killed",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"]
        # A quiet console: the worker's and beat's INFO lines (one per task) drown the banner.
        self.child_log_level = "INFO" if options["verbose"] else "WARNING"
        ports = [port]
        use_devcloud = not options["no_devcloud"] and self._devcloud_available()
        if use_devcloud:
            ports += [options["devcloud_port"], options["devcloud_http_port"]]
        busy = [p for p in ports if not _port_is_free(p)]
        if busy:
            raise CommandError(
                f"Port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use: stop what "
                "uses them, or choose others (manage.py demo --help)."
            )

        try:
            password = self._prepare()
        except KeyboardInterrupt:
            raise CommandError("Interrupted before anything was started.") from None
        supervisor = Supervisor(self.stdout, stop_timeout=options["stop_timeout"])
        base_url = f"http://127.0.0.1:{port}"

        def request_stop(signum: int, frame: object) -> None:
            supervisor.stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, request_stop)

        failure = ""
        try:
            env = self._child_env(base_url)
            if use_devcloud:
                env |= self._start_devcloud(supervisor, options, base_url)
            elif not options["no_devcloud"]:
                supervisor.say(
                    "devcloud (the Microsoft emulator) is not available in this checkout: "
                    "running without it, so consent and sync have nothing to talk to."
                )
            self._start_portal(supervisor, env, port, options["worker_threads"])
            web_up, banner_at = False, 0.0
            while not supervisor.stop_requested.is_set() and not supervisor.exited():
                if not web_up and _answers(port):
                    web_up = True
                # At the end of start-up, and again every few minutes: the sign-in details
                # never scroll out of reach for good.
                if web_up and time.monotonic() - banner_at >= BANNER_EVERY_SECONDS:
                    banner_at = time.monotonic()
                    self._banner(supervisor, base_url, password)
                supervisor.stop_requested.wait(0.3)
            died = supervisor.exited()
            if died and not supervisor.stop_requested.is_set():
                failure = f"{died.name} exited with status {died.proc.returncode}"
        except _StartupFailed as exc:
            if not supervisor.stop_requested.is_set():  # a stop asked for is no failure
                failure = str(exc)
        finally:
            supervisor.stop_all()
        if failure:
            raise CommandError(f"{failure}; everything is stopped.")
        supervisor.say("Demo stopped.")

    # --- steps ------------------------------------------------------------------------------

    def _prepare(self) -> str:
        self.stdout.write("Preparing the database…")
        self.stdout.flush()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            # Claimed messages of earlier runs (kept there only so that claiming is atomic).
            for old in Path(options["processed_folder"]).glob("*.msg"):
                old.unlink(missing_ok=True)
        return self._demo_user()

    def _demo_user(self) -> str:
        from axes.utils import reset

        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        reset(username=DEMO_USERNAME)  # a lockout from an earlier run must not lock the demo
        return password

    def _devcloud_available(self) -> bool:
        probe = subprocess.run(  # noqa: S603
            [sys.executable, "-c", "import devcloud"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def _child_env(self, base_url: str) -> dict[str, str]:
        env = dict(os.environ)
        # The demo's own address, whatever a .env says: it serves on 127.0.0.1 only.
        env |= {
            "DEBUG": "true",
            "PUBLIC_BASE_URL": base_url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": base_url,
            "VAR_DIR": str(settings.VAR_DIR),
            "PYTHONUNBUFFERED": "1",
        }
        # devcloud's incidents evolve every minute: sync as often, unless told otherwise.
        env.setdefault("SYNC_INTERVAL_MINUTES", "1")
        # Quiet unless --verbose (or LOG_LEVEL) asks otherwise; runserver's "development
        # server" warning is what the demo is.
        env.setdefault("LOG_LEVEL", getattr(self, "child_log_level", "WARNING"))
        env.setdefault("DJANGO_RUNSERVER_HIDE_WARNING", "true")
        return env

    def _start_devcloud(
        self, supervisor: Supervisor, options: dict[str, Any], portal_url: str
    ) -> dict[str, str]:
        """Start devcloud, register the demo app in it, return the portal's MICROSOFT_* env."""
        state_dir = Path(settings.VAR_DIR) / "devcloud"
        child = supervisor.start(
            "devcloud",
            [
                sys.executable,
                "-m",
                "devcloud",
                "--scenario",
                "demo",
                "--port",
                str(options["devcloud_port"]),
                "--state-dir",
                str(state_dir),
                "--http-port",
                str(options["devcloud_http_port"]),
            ],
            env=self._child_env(portal_url),
            ready_marker="devcloud ready",
        )
        if not supervisor.wait(child.ready, DEVCLOUD_READY_TIMEOUT):
            if supervisor.stop_requested.is_set():
                raise _StartupFailed("stopped while devcloud was starting")
            if child.proc.poll() is not None:
                raise _StartupFailed(f"devcloud exited with status {child.proc.returncode}")
            raise _StartupFailed(f"devcloud was not ready in {DEVCLOUD_READY_TIMEOUT} s")
        info = _key_values(child.lines)
        if "base_url" not in info or "ca_file" not in info:
            raise _StartupFailed("devcloud did not print its base_url and ca_file")

        secret = secrets.token_urlsafe(32)
        permission = (
            "Incident.ReadWrite.All" if settings.MICROSOFT_INCIDENT_UPDATES else "Incident.Read.All"
        )
        registration = {
            "base_url": info["base_url"],
            "ca_file": info["ca_file"],
            "display_name": f"{settings.MSP_NAME} (demo)",
            "secret": secret,
            "redirect_uris": [f"{portal_url}/consent/callback/"],
            "required_permissions": [permission],
        }
        # The same client ID on every run, so that consents kept in devcloud's state still
        # match; a new one if devcloud refuses it (e.g. it already knows that app).
        id_file = Path(settings.VAR_DIR) / "demo-client-id"
        if not id_file.exists():
            id_file.write_text(str(uuid.uuid4()))
        client_id = id_file.read_text().strip()
        # devcloud keeps consents in memory only; Microsoft keeps them. Grant again what this
        # app was given before a restart, or those tenants would fail once cached tokens expire.
        error = self._register_app(
            registration | {"client_id": client_id, "consented_tenants": _consented_tenant_ids()}
        )
        if error:
            client_id = str(uuid.uuid4())
            if self._register_app(registration | {"client_id": client_id}):
                raise _StartupFailed(f"registering the demo app in devcloud failed: {error}")
            id_file.write_text(client_id)
        supervisor.say(
            f"Registered the demo app in devcloud (client ID {client_id}, "
            f"permission {permission}, a new client secret for this run)."
        )
        env = {
            "MICROSOFT_LOGIN_BASE_URL": info.get("login_base_url", info["base_url"]),
            "MICROSOFT_DEFENDER_BASE_URL": info.get("defender_base_url", info["base_url"]),
            "MICROSOFT_CA_BUNDLE": info["ca_file"],
            "MICROSOFT_CLIENT_ID": client_id,
            "MICROSOFT_CLIENT_SECRET": secret,
        }
        if "http_base_url" in info:
            # Browsers go to devcloud's consent page over plain HTTP: they don't trust its CA.
            env["MICROSOFT_CONSENT_BASE_URL"] = info["http_base_url"]
        return env

    def _register_app(self, registration: dict[str, Any]) -> str:
        """Register the app through devcloud's own client; "" on success, else the error."""
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", REGISTER_APP],
            cwd=settings.BASE_DIR,
            input=json.dumps(registration).encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return ""
        # Only the last line (the exception): the traceback above it may quote the secret.
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"

    def _start_portal(
        self, supervisor: Supervisor, env: dict[str, str], port: int, threads: int
    ) -> None:
        python = sys.executable
        supervisor.start(
            "web",
            [python, MANAGE_PY, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
        )
        # Threads, not forked processes: sync is I/O-bound, and one process keeps one MSAL
        # client and token cache per tenant.
        supervisor.start(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "partner_portal",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(threads),
                "--hostname",
                "demo-worker@%h",
                "--loglevel",
                self.child_log_level,
                "--without-mingle",
                "--without-gossip",
            ],  # fmt: skip
            env=env,
        )
        supervisor.start(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "partner_portal",
                "beat",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--loglevel",
                self.child_log_level,
            ],  # fmt: skip
            env=env,
        )

    def _banner(self, supervisor: Supervisor, base_url: str, password: str) -> None:
        rule = "=" * 64
        supervisor.say(
            f"\n{rule}\n"
            f"  Partner Portal demo is running: open {base_url}/\n"
            f"  Sign in as the demo staff user (superuser):\n"
            f"    username: {DEMO_USERNAME}\n"
            f"    password: {password}\n"
            f"  (a new password on every run)   Ctrl-C stops everything.\n"
            f"{rule}\n"
        )


class _StartupFailed(Exception):
    pass


def _consented_tenant_ids() -> list[str]:
    """Entra tenant IDs of the tenants whose consent the portal has recorded."""
    from partner_portal.tenants.models import Tenant

    states = [Tenant.ConsentState.CONSENTED, Tenant.ConsentState.PENDING]
    return [
        str(tid)
        for tid in Tenant.objects.filter(consent_state__in=states)
        .exclude(entra_tenant_id=None)
        .values_list("entra_tenant_id", flat=True)
    ]


def _key_values(lines: list[str]) -> dict[str, str]:
    """`devcloud base_url=https://…` lines → {"base_url": "https://…"}."""
    found: dict[str, str] = {}
    for line in lines:
        words = line.strip().split(" ", 1)
        if len(words) == 2 and words[0] == "devcloud" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            found[key.strip()] = value.strip()
    return found
