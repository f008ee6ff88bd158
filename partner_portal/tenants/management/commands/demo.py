"""`python manage.py demo`: the whole portal on one machine, with nothing to install or configure.

1. Migrate the database, create the cache table, create (or reset) the demo staff user.
2. Start devcloud, the Microsoft emulator, when this checkout has it; wait for its
   `devcloud ready {…}` line; register the portal's demo app through its control API.
3. Start the web server, a Celery worker and Celery beat, pointed at devcloud through the
   MICROSOFT_* environment variables.
4. Show every child's output prefixed by its name (partner_portal/demo/supervisor.py). A worker
   or beat that exits is started again (e.g. after the broker was away); when web or devcloud
   exits, or on Ctrl-C or SIGTERM, stop them all.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from partner_portal.demo import devcloud_control
from partner_portal.demo.supervisor import Supervisor
from partner_portal.microsoft.client import required_roles

DEMO_USERNAME = "demo"
DEMO_MSP_TENANT = "0d5e7f3a-5c1b-4e2d-9f8a-7b6c5d4e3f44"  # devcloud's MSP tenant (staff sign-in)
DEMO_STAFF_GROUP = "MSP technicians"  # what the Portal.Technician app role maps to
DEVCLOUD_READY_TIMEOUT = 90
BANNER_EVERY_SECONDS = 300
MANAGE_PY = str(Path(settings.BASE_DIR) / "manage.py")


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
        # Looked up, not imported: the portal and the emulator share no code.
        has_devcloud = importlib.util.find_spec("devcloud") is not None
        use_devcloud = has_devcloud and not options["no_devcloud"]
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
        supervisor = Supervisor(
            self.stdout, cwd=settings.BASE_DIR, stop_timeout=options["stop_timeout"]
        )
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
            died = None
            while not supervisor.stop_requested.is_set() and not died:
                if not web_up and _answers(port):
                    web_up = True
                # At the end of start-up, and again every few minutes: the sign-in details
                # never scroll out of reach for good.
                if web_up and time.monotonic() - banner_at >= BANNER_EVERY_SECONDS:
                    banner_at = time.monotonic()
                    self._banner(supervisor, base_url, password, entra="ENTRA_TENANT_ID" in env)
                supervisor.stop_requested.wait(0.3)
                died = supervisor.poll()  # and restarts a worker or beat that exited
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
        _demo_customers()
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
        from partner_portal.alerts.demo import ensure_demo_rule

        ensure_demo_rule(user=user)  # "High and above, all tenants → console email"
        return password

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
        # The demo works incidents too: its app asks for Incident.ReadWrite.All.
        env.setdefault("MICROSOFT_INCIDENT_UPDATES", "true")
        return env

    def _start_devcloud(
        self, supervisor: Supervisor, options: dict[str, Any], portal_url: str
    ) -> dict[str, str]:
        """Start devcloud, register the demo app in it, return the portal's MICROSOFT_* env."""
        facts: dict[str, str] = {}
        ready = threading.Event()

        def read_ready_line(line: str) -> None:
            if not ready.is_set() and (found := devcloud_control.ready_facts(line)):
                facts.update(found)
                ready.set()

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
                str(Path(settings.VAR_DIR) / "devcloud"),
                "--http-port",
                str(options["devcloud_http_port"]),
            ],
            env=self._child_env(portal_url),
            on_line=read_ready_line,
        )
        if not supervisor.wait(ready, DEVCLOUD_READY_TIMEOUT):
            if supervisor.stop_requested.is_set():
                raise _StartupFailed("stopped while devcloud was starting")
            if child.proc.poll() is not None:
                raise _StartupFailed(f"devcloud exited with status {child.proc.returncode}")
            raise _StartupFailed(f"devcloud was not ready in {DEVCLOUD_READY_TIMEOUT} s")

        secret = secrets.token_urlsafe(32)
        # Both sources' permission: one demo customer reads incidents through Graph.
        # (The children's setting, which the demo defaults to on, not this process's.)
        updates = os.environ.get("MICROSOFT_INCIDENT_UPDATES", "true").strip().lower()
        on = updates in ("1", "true", "yes", "on")
        permissions = required_roles("defender", updates=on) + required_roles("graph", updates=on)
        client_id = _demo_client_id()
        try:
            devcloud_control.register_app(
                base_url=facts["base_url"],
                ca_file=facts["ca_file"],
                client_id=client_id,
                secret=secret,
                display_name=f"{settings.MSP_NAME} (demo)",
                redirect_uris=[
                    f"{portal_url}/{path}"
                    for path in ("consent/callback/", "login/entra/callback/", "login/")
                ],
                required_permissions=permissions,
                consented_tenants=_consented_tenant_ids(),
                msp_tenant=DEMO_MSP_TENANT,
            )
        except devcloud_control.ControlError as exc:
            raise _StartupFailed(f"registering the demo app in devcloud failed: {exc}") from None
        supervisor.say(
            f"Registered the demo app in devcloud (client ID {client_id}, "
            f"permissions {', '.join(permissions)}, a new client secret for this run)."
        )
        # devcloud serves each Microsoft cloud under its own base URL; the demo app is
        # registered in every one (one registry), as the GCC High registration too.
        per_cloud = facts["base_url"] + "/_clouds/{cloud}"
        env = {
            "MICROSOFT_LOGIN_BASE_URL": per_cloud,
            "MICROSOFT_DEFENDER_BASE_URL": per_cloud,
            "MICROSOFT_GRAPH_BASE_URL": per_cloud,
            "MICROSOFT_CA_BUNDLE": facts["ca_file"],
            "MICROSOFT_CLIENT_ID": client_id,
            "MICROSOFT_CLIENT_SECRET": secret,
            "MICROSOFT_GCC_HIGH_CLIENT_ID": client_id,
            "MICROSOFT_GCC_HIGH_CLIENT_SECRET": secret,
            "SIGN_IN_MODE": os.environ.get("SIGN_IN_MODE", "both"),
            "ENTRA_TENANT_ID": DEMO_MSP_TENANT,
            "ENTRA_ROLE_GROUPS": f"Portal.Technician={DEMO_STAFF_GROUP}",
        }
        if "http_base_url" in facts:
            # Browsers go to devcloud's consent page over plain HTTP: they don't trust its CA.
            env["MICROSOFT_CONSENT_BASE_URL"] = facts["http_base_url"] + "/_clouds/{cloud}"
        return env

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
            restart=True,
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
            restart=True,
        )

    def _banner(
        self, supervisor: Supervisor, base_url: str, password: str, *, entra: bool = False
    ) -> None:
        rule = "=" * 64
        supervisor.say(
            f"\n{rule}\n"
            f"  Partner Portal demo is running: open {base_url}/\n"
            f"  Sign in as the demo staff user (superuser):\n"
            f"    username: {DEMO_USERNAME}\n"
            f"    password: {password}\n"
            f"  (a new password on every run)   Ctrl-C stops everything.\n"
            + (
                f"  Or: Sign in with Microsoft → technician@msp-demo.onmicrosoft.com\n"
                f"    (in devcloud; sees the tenants of the group '{DEMO_STAFF_GROUP}')\n"
                if entra
                else ""
            )
            + f"{rule}\n"
        )


class _StartupFailed(Exception):
    pass


# Customers the demo starts with, ready for a consent link: one read through Microsoft
# Graph, one in GCC High (devcloud's demo scenario has both tenants).
DEMO_CUSTOMERS = [
    ("Fabrikam", "fabrikam.onmicrosoft.com", {"source": "graph"}),
    ("Tailspin Toys", "tailspin.onmicrosoft.us", {"cloud": "gcc_high"}),
]


def _demo_customers() -> None:
    from partner_portal.tenants.models import Tenant

    for name, domain, fields in DEMO_CUSTOMERS:
        if not Tenant.objects.filter(primary_domain=domain).exists():
            Tenant.objects.create(display_name=name, primary_domain=domain, **fields)


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


def _demo_client_id() -> str:
    """The same client ID on every run, so that the consents the portal recorded still match."""
    id_file = Path(settings.VAR_DIR) / "demo-client-id"
    try:
        return str(uuid.UUID(id_file.read_text().strip()))
    except (OSError, ValueError):  # the first run, or a file that is not an ID
        client_id = str(uuid.uuid4())
        id_file.write_text(client_id)
        return client_id
