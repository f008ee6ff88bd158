"""Partner Portal settings: one module, every knob from the environment, secure defaults.

Every variable read here is documented in `.env.example`. A bare checkout runs on SQLite
and an embedded broker (`python manage.py demo`); production sets DATABASE_URL, REDIS_URL,
SECRET_KEY and PUBLIC_BASE_URL.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
# Variables already in the environment win over the file. ENV_FILE= (empty) reads no file,
# which the tests use so that a developer's .env cannot change what they check.
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """A strict boolean: a typo such as DEBUG=ture is an error, not a silent False."""
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}.")
    return value


def env_base_url(name: str, default: str) -> str:
    """An absolute http(s) URL without query or fragment, returned without a trailing slash."""
    raw = env.str(name, default=default)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name}={raw!r} must be an absolute http(s) URL such as https://portal.example.com"
        )
    return raw.rstrip("/")


def env_path(name: str) -> str:
    raw = env.str(name, default="")
    if raw and not Path(raw).is_file():
        raise ImproperlyConfigured(f"{name}={raw!r}: no such file.")
    return raw


# --- Core -------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
TESTING = "pytest" in sys.modules
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "dev-only-key-never-use-in-production-0123456789abcdefghijklmnop"  # noqa: S105

PUBLIC_BASE_URL = env_base_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
_public = urlsplit(PUBLIC_BASE_URL)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[_public.hostname, "127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[f"{_public.scheme}://{_public.netloc}"]
)
MSP_NAME = env.str("MSP_NAME", default="Partner Portal")

INSTALLED_APPS = [
    # django.contrib.admin with a site that admits superusers only (partner_portal/admin.py).
    "partner_portal.admin.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "django_filters",
    "django_htmx",
    "django_celery_beat",
    "partner_portal.tenants",
    "partner_portal.consent",
    "partner_portal.incidents",
    "partner_portal.audit",
    "partner_portal.accounts",
    "partner_portal.alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Signed-in pages (and the CSV export) are never kept by browsers or proxies.
    "partner_portal.middleware.no_store_when_signed_in",
    "django.contrib.messages.middleware.MessageMiddleware",
    "partner_portal.incidents.time_zones.time_zone_middleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "partner_portal.urls"
WSGI_APPLICATION = "partner_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "partner_portal.context_processors.portal",
                "partner_portal.alerts.context_processors.failing_channels",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------

# Set but empty (`DATABASE_URL=` in a .env or compose file) means the default, as unset does.
DATABASE_URL = env.str("DATABASE_URL", default="").strip()
DATABASES = {
    "default": env.db_url_config(DATABASE_URL or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] not in (
    "django.db.backends.sqlite3",
    "django.db.backends.postgresql",
):
    raise ImproperlyConfigured(
        "DATABASE_URL must be postgres://user:password@host:port/name or sqlite:///path"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Web, worker and beat write to one file: wait for the lock instead of failing,
        # take it up front (no upgrade deadlocks) and let readers run beside a writer.
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that worker processes started by tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env_int("CONN_MAX_AGE", 60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # No JIT: it compiles a plan whose estimate crosses jit_above_cost, and with a growing
    # table's stale statistics a sync page's upsert paid 20 ms compiling a statement that
    # ran in 0.5. None of the portal's statements runs long enough to win it back.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c jit=off".strip()
    # Prepare a statement run more than DATABASE_PREPARE_THRESHOLD times on a connection
    # (psycopg's default, 5; Django turns preparing off): only statements sent through
    # raw_sql.cursor(), which binds on the server (the sync's, run by every tenant's run),
    # never the ORM's. Half of their server CPU was parsing and planning them again. 0
    # turns it off: needed behind PgBouncer in transaction mode before PgBouncer 1.21 (or
    # without its max_prepared_statements).
    options["prepare_threshold"] = env_int("DATABASE_PREPARE_THRESHOLD", 5) or None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, broker and Celery -----------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in ("redis", "rediss"):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis:// or rediss://")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "partner_portal.redis_cache.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
    CELERY_BROKER_URL = REDIS_URL
else:
    # No server to install: the database holds the cache (atomic add() for leases and
    # budgets, shared by every process) and kombu's filesystem transport is the broker.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "portal_cache",
        }
    }
    # Consumers claim a message by renaming its file into `processed`; a rename within one
    # filesystem is atomic, so of several workers exactly one gets each message. (With
    # store_processed off kombu moves it to /tmp instead, which may be another filesystem,
    # where a move is copy + delete and two workers can both get it.) `demo` empties
    # `processed` at start. The control folder holds the fanout tables (worker remote control);
    # kombu's default is a relative path, i.e. wherever the process was started.
    _queue_dir = VAR_DIR / "celery-queue"
    for _sub in ("processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": True,
        "control_folder": str(_queue_dir / "control"),
    }

SYNC_TASK_SOFT_TIME_LIMIT = env_int("SYNC_TASK_SOFT_TIME_LIMIT", 15 * 60, minimum=10)
SYNC_TASK_TIME_LIMIT = SYNC_TASK_SOFT_TIME_LIMIT + 60
# How long a sync run holds its tenant without renewing it. A live run renews it every page
# and, while it waits on a slow call, every third of it; a dead worker's tenant is free
# again within one lease (tests shorten it).
SYNC_LEASE_SECONDS = env_int("SYNC_LEASE_SECONDS", 90, minimum=1)
# Transient errors (5xx, timeouts…): retries with exponential backoff from this base, plus
# jitter. Throttling (429 / our call budget) waits exactly as long as asked, up to
# SYNC_MAX_THROTTLED_RETRIES times.
SYNC_MAX_RETRIES = env_int("SYNC_MAX_RETRIES", 5)
SYNC_RETRY_BACKOFF_SECONDS = env_int("SYNC_RETRY_BACKOFF_SECONDS", 10, minimum=1)
SYNC_MAX_THROTTLED_RETRIES = env_int("SYNC_MAX_THROTTLED_RETRIES", 100)

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = SYNC_TASK_SOFT_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = SYNC_TASK_TIME_LIMIT
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost the broker tries again every second, then less often, at least every
# BROKER_RECONNECT_SECONDS (partner_portal.celery.Consumer), and never gives up (Celery's
# default gives up after 100 attempts and the worker exits).
BROKER_RECONNECT_SECONDS = env_int("BROKER_RECONNECT_SECONDS", 5, minimum=1)
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CONSUMER = "partner_portal.celery:Consumer"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connections around every task unless this is set
# (then only every 2 × N tasks): partner_portal/celery.py closes them by Django's rules and
# whenever a task left one mid-transaction, so a worker keeps its connections (CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = 1000
if REDIS_URL:
    # Must exceed the longest task plus the longest retry countdown (Retry-After ≤ 1 h),
    # or Redis redelivers a task that is still running or waiting.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
SYNC_INTERVAL_MINUTES = env_int("SYNC_INTERVAL_MINUTES", 5, minimum=1)
ALERTS_DISPATCH_SECONDS = env_int("ALERTS_DISPATCH_SECONDS", 10, minimum=1)
# Every SYNC_RECONCILE_HOURS a tenant's scheduled sync is a reconciliation pass instead: a
# full listing that repairs what the watermark could have missed (Microsoft's clock stepping
# back, late indexing). At most one tenant per schedule tick; 0 turns it off.
SYNC_RECONCILE_HOURS = env_int("SYNC_RECONCILE_HOURS", 24, minimum=0)
# A tick queues quiet tenants (their last run read one page) this many to a task, one after
# the other: Celery's own cost per task is a third of such a run's. 1 = a task per tenant.
SYNC_BATCH_SIZE = env_int("SYNC_BATCH_SIZE", 10, minimum=1)
CELERY_BEAT_SCHEDULE = {
    # Every SYNC_INTERVAL_MINUTES: fan out one sync_tenant per enabled, consented tenant.
    # Loaded into django-celery-beat's tables at start; editable in the admin.
    "sync-all-tenants": {
        "task": "partner_portal.incidents.tasks.sync_all_tenants",
        "schedule": SYNC_INTERVAL_MINUTES * 60.0,
        "options": {"expires": SYNC_INTERVAL_MINUTES * 60.0},
    },
    # Turn the sync's outbox into deliveries and pick up deliveries whose task was lost.
    "dispatch-alerts": {
        "task": "partner_portal.alerts.tasks.dispatch_alerts",
        "schedule": float(ALERTS_DISPATCH_SECONDS),
        "options": {"expires": 60.0},
    },
}

# --- Auth and sign-in -------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Local passwords as SIGN_IN_MODE allows; sessions of Microsoft (Entra ID) sign-ins.
    "partner_portal.accounts.backends.PasswordBackend",
    "partner_portal.accounts.backends.EntraBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "incidents:list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_COOLOFF_MINUTES = env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = LOGIN_COOLOFF_MINUTES / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Reverse proxies in front of the portal that append to X-Forwarded-For (L2). One function
# turns it into the client address, for the lockout, the audit log and rate limits alike.
PROXY_COUNT = env_int("PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "partner_portal.audit.events.client_ip"

# --- Security ---------------------------------------------------------------------------

_https = _public.scheme == "https"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _https and not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _https and not DEBUG else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SESSION_COOKIE_HTTPONLY = True
# Sessions end after this long without a request (sliding: every request renews it).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE_HOURS", 12, minimum=1) * 3600
SESSION_SAVE_EVERY_REQUEST = True
# Database sessions, read and renewed in plain SQL: every request does both.
SESSION_ENGINE = "partner_portal.accounts.sessions"
X_FRAME_OPTIONS = "DENY"
# A strict Content-Security-Policy (django-csp): no inline scripts or styles anywhere, no
# other origins. The consent landing page adds the Microsoft (or devcloud) origin its form
# redirects to to `form-action`, at request time (consent/views.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- Static files -----------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request until collectstatic ran
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Microsoft --------------------------------------------------------------------------

# Each tenant has its own cloud (commercial, GCC, GCC High, DoD: `Tenant.cloud`).
MICROSOFT_CLIENT_ID = env.str("MICROSOFT_CLIENT_ID", default="")
MICROSOFT_CLIENT_SECRET = env.str("MICROSOFT_CLIENT_SECRET", default="")
# Certificate credentials (preferred in production): PEM certificate + PEM private key.
MICROSOFT_CERTIFICATE_PATH = env_path("MICROSOFT_CERTIFICATE_PATH")
MICROSOFT_PRIVATE_KEY_PATH = env_path("MICROSOFT_PRIVATE_KEY_PATH")
if bool(MICROSOFT_CERTIFICATE_PATH) != bool(MICROSOFT_PRIVATE_KEY_PATH):
    raise ImproperlyConfigured(
        "Set both MICROSOFT_CERTIFICATE_PATH and MICROSOFT_PRIVATE_KEY_PATH, or neither."
    )
# App registrations in the national clouds: one per Entra ID a customer signs in at (a
# commercial registration cannot get tokens in GCC High). The commercial one above also
# serves GCC. Unset: tenants in that cloud say so on their page and are not synced.
MICROSOFT_CLOUD_CREDENTIALS: dict[str, dict[str, str]] = {
    "gcc_high": {
        "client_id": env.str("MICROSOFT_GCC_HIGH_CLIENT_ID", default=""),
        "client_secret": env.str("MICROSOFT_GCC_HIGH_CLIENT_SECRET", default=""),
        "certificate_path": env_path("MICROSOFT_GCC_HIGH_CERTIFICATE_PATH"),
        "private_key_path": env_path("MICROSOFT_GCC_HIGH_PRIVATE_KEY_PATH"),
    },
    "dod": {
        "client_id": env.str("MICROSOFT_DOD_CLIENT_ID", default=""),
        "client_secret": env.str("MICROSOFT_DOD_CLIENT_SECRET", default=""),
        "certificate_path": env_path("MICROSOFT_DOD_CERTIFICATE_PATH"),
        "private_key_path": env_path("MICROSOFT_DOD_PRIVATE_KEY_PATH"),
    },
}
# Where incidents are read when a tenant does not say: "defender" (the Microsoft 365
# Defender API) or "graph" (Microsoft Graph's /security/incidents).
MICROSOFT_DEFAULT_SOURCE = env.str("MICROSOFT_DEFAULT_SOURCE", default="defender")
if MICROSOFT_DEFAULT_SOURCE not in ("defender", "graph"):
    raise ImproperlyConfigured(
        f"MICROSOFT_DEFAULT_SOURCE={MICROSOFT_DEFAULT_SOURCE!r} must be defender or graph."
    )
# Overrides of the cloud's hosts: only devcloud (the emulator) needs them. "{cloud}" in a
# value is replaced by the tenant's cloud (devcloud serves each under /_clouds/<cloud>).
MICROSOFT_LOGIN_BASE_URL = env.str("MICROSOFT_LOGIN_BASE_URL", default="")
MICROSOFT_DEFENDER_BASE_URL = env.str("MICROSOFT_DEFENDER_BASE_URL", default="")
MICROSOFT_GRAPH_BASE_URL = env.str("MICROSOFT_GRAPH_BASE_URL", default="")
if MICROSOFT_LOGIN_BASE_URL:
    MICROSOFT_LOGIN_BASE_URL = env_base_url("MICROSOFT_LOGIN_BASE_URL", "")
if MICROSOFT_DEFENDER_BASE_URL:
    MICROSOFT_DEFENDER_BASE_URL = env_base_url("MICROSOFT_DEFENDER_BASE_URL", "")
if MICROSOFT_GRAPH_BASE_URL:
    MICROSOFT_GRAPH_BASE_URL = env_base_url("MICROSOFT_GRAPH_BASE_URL", "")
# Where browsers are sent for admin consent (default: the login base URL). Only the demo sets
# it, to send browsers to devcloud's plain-HTTP port; tokens always use the login base URL.
MICROSOFT_CONSENT_BASE_URL = env.str("MICROSOFT_CONSENT_BASE_URL", default="")
if MICROSOFT_CONSENT_BASE_URL:
    MICROSOFT_CONSENT_BASE_URL = env_base_url("MICROSOFT_CONSENT_BASE_URL", "")
# A CA bundle to trust instead of the system's (devcloud's CA). Applied with trust_env off,
# because REQUESTS_CA_BUNDLE in the environment would silently override it.
MICROSOFT_CA_BUNDLE = env_path("MICROSOFT_CA_BUNDLE")
MICROSOFT_HTTP_TIMEOUT = env_int("MICROSOFT_HTTP_TIMEOUT", 30, minimum=1)
# Ask for Incident.ReadWrite.All instead of Incident.Read.All (updates from the portal).
MICROSOFT_INCIDENT_UPDATES = env_bool("MICROSOFT_INCIDENT_UPDATES", False)
# Key for the token cache at rest; derived from SECRET_KEY when unset.
TOKEN_CACHE_KEY = env.str("TOKEN_CACHE_KEY", default="")

# --- Staff sign-in with Microsoft -------------------------------------------------------

# Sign-in with the MSP's own Entra tenant (README "Signing in with Entra ID"). password: local
# passwords only; entra: Microsoft only, and local passwords only for the break-glass
# superusers; both: either.
SIGN_IN_MODES = ("password", "entra", "both")
SIGN_IN_MODE = env.str("SIGN_IN_MODE", default="password")
if SIGN_IN_MODE not in SIGN_IN_MODES:
    raise ImproperlyConfigured(f"SIGN_IN_MODE={SIGN_IN_MODE!r} must be password, entra or both.")
SIGN_IN_BREAK_GLASS_USERS = env.list("SIGN_IN_BREAK_GLASS_USERS", default=[])
ENTRA_TENANT_ID = env.str("ENTRA_TENANT_ID", default="").strip().lower()
# The Microsoft cloud of the MSP's own tenant (its login host).
ENTRA_CLOUD = env.str("ENTRA_CLOUD", default="commercial")
if ENTRA_CLOUD not in ("commercial", "gcc", "gcc_high", "dod"):
    raise ImproperlyConfigured(
        f"ENTRA_CLOUD={ENTRA_CLOUD!r} must be commercial, gcc, gcc_high or dod."
    )
if SIGN_IN_MODE != "password" and not ENTRA_TENANT_ID:
    raise ImproperlyConfigured(
        f"SIGN_IN_MODE={SIGN_IN_MODE} needs ENTRA_TENANT_ID (the MSP's own tenant ID)."
    )
if ENTRA_TENANT_ID and not re.fullmatch(
    r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", ENTRA_TENANT_ID
):
    # The ID token's issuer names the tenant by its GUID: a domain would never match.
    raise ImproperlyConfigured(f"ENTRA_TENANT_ID={ENTRA_TENANT_ID!r} must be the tenant's GUID.")
# Entra app role value → portal group name; Entra group object ID → portal group name.
ENTRA_ROLE_GROUPS = env.dict("ENTRA_ROLE_GROUPS", default={})
ENTRA_GROUP_GROUPS = env.dict("ENTRA_GROUP_GROUPS", default={})
# Refuse ID tokens whose `amr` lacks "mfa" (when Conditional Access does not enforce MFA).
ENTRA_REQUIRE_MFA = env_bool("ENTRA_REQUIRE_MFA", False)
# How long a sign-in started at the portal may take at Microsoft before it is refused.
ENTRA_SIGN_IN_MAX_SECONDS = env_int("ENTRA_SIGN_IN_MAX_SECONDS", 600, minimum=30)

# --- Consent and sync -------------------------------------------------------------------

CONSENT_LINK_MAX_AGE_DAYS = env_int("CONSENT_LINK_MAX_AGE_DAYS", 14, minimum=1)
CONSENT_STATE_MAX_AGE_SECONDS = env_int("CONSENT_STATE_MAX_AGE_SECONDS", 3600, minimum=60)
# Rejected consent callbacks are counted per client address; at most one audit row per
# address per this many seconds (0: one per rejection).
CONSENT_REJECTION_AUDIT_SECONDS = env_int("CONSENT_REJECTION_AUDIT_SECONDS", 60)
# At most this far back before the watermark, as far as a run's pages have room (sync.py).
SYNC_OVERLAP_MINUTES = env_int("SYNC_OVERLAP_MINUTES", 5)
DEFENDER_CALLS_PER_MINUTE = env_int("DEFENDER_CALLS_PER_MINUTE", 50, minimum=1)
DEFENDER_CALLS_PER_HOUR = env_int("DEFENDER_CALLS_PER_HOUR", 1500, minimum=1)
# Graph's security API: 150 a minute per app per tenant (its throttling page's security
# row; no incident-specific row is published, §7.8) and no documented hourly limit.
GRAPH_CALLS_PER_MINUTE = env_int("GRAPH_CALLS_PER_MINUTE", 150, minimum=1)
GRAPH_CALLS_PER_HOUR = env_int("GRAPH_CALLS_PER_HOUR", 9000, minimum=1)
# Calls of each budget period that incident actions leave to the sync, so that a bulk
# action never starves a tenant's sync.
ACTIONS_BUDGET_RESERVE = env_int("ACTIONS_BUDGET_RESERVE", 10, minimum=0)
# How often a bulk action that met a transient error (5xx, timeout) is retried per incident.
ACTIONS_MAX_RETRIES = env_int("ACTIONS_MAX_RETRIES", 4, minimum=0)

# --- Dashboard --------------------------------------------------------------------------

# How often the incident list asks whether incidents were added or updated since it opened.
DASHBOARD_POLL_SECONDS = env_int("DASHBOARD_POLL_SECONDS", 30, minimum=1)
# How long the summary page's numbers are reused (per set of visible tenants and day): over
# a million incidents they cost hundreds of milliseconds to count. 0 turns the cache off.
DASHBOARD_SUMMARY_CACHE_SECONDS = env_int("DASHBOARD_SUMMARY_CACHE_SECONDS", 60, minimum=0)

# --- Alerting ---------------------------------------------------------------------------

# Where alert emails go out: smtp://user:password@host:587 (submission+tls://… for STARTTLS,
# smtp+ssl://… for TLS), or consolemail:// to print them (the default, and the demo's).
EMAIL_URL = env.str("EMAIL_URL", default="consolemail://")
vars().update(environ.Env.email_url_config(EMAIL_URL))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Partner Portal <alerts@localhost>")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
# At most this many messages per channel per minute; the rest are folded into one digest.
ALERTS_MAX_PER_CHANNEL_PER_MINUTE = env_int("ALERTS_MAX_PER_CHANNEL_PER_MINUTE", 20, minimum=1)
# A delivery that keeps failing (429, 5xx, timeouts) is retried with exponential backoff from
# ALERTS_RETRY_BACKOFF_SECONDS and marked failed ALERTS_GIVE_UP_SECONDS after it was due.
ALERTS_RETRY_BACKOFF_SECONDS = env_int("ALERTS_RETRY_BACKOFF_SECONDS", 10, minimum=1)
ALERTS_GIVE_UP_SECONDS = env_int("ALERTS_GIVE_UP_SECONDS", 3600, minimum=1)
# Timeout of one webhook/Teams/Slack call, and how long a worker holds a delivery it is
# sending (after that, e.g. when the worker died, another worker takes it over).
ALERTS_HTTP_TIMEOUT = env_int("ALERTS_HTTP_TIMEOUT", 10, minimum=1)
ALERTS_SEND_LEASE_SECONDS = env_int("ALERTS_SEND_LEASE_SECONDS", 120, minimum=1)
# Webhooks and Teams go to public internet addresses only (no loopback, private, link-local
# or metadata addresses); true allows private networks, e.g. a receiver on the MSP's LAN.
ALERTS_ALLOW_PRIVATE_DESTINATIONS = env_bool("ALERTS_ALLOW_PRIVATE_DESTINATIONS", False)

# --- Logging ----------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"LOG_LEVEL={LOG_LEVEL!r} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # MSAL logs request details at DEBUG; keep secrets out of logs whatever LOG_LEVEL says.
    "loggers": {"msal": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}
