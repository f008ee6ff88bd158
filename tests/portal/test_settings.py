"""Settings come from the environment: bad values stop the start with a message naming the
variable, production values pass `check --deploy`, and `.env.example` documents everything."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import pytest
from django.core.management import call_command

from tests.portal.settings_source import BASE_DIR, clean_env, manage, settings_variables


def production_env(tmp_path) -> dict[str, str]:
    return clean_env(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        PUBLIC_BASE_URL="https://portal.example.com",
        ALLOWED_HOSTS="portal.example.com",
    )


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env=env | {"DJANGO_SETTINGS_MODULE": "partner_portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "overrides"),
    [
        ("DEBUG", {"DEBUG": "maybe"}),
        ("SYNC_INTERVAL_MINUTES", {"SYNC_INTERVAL_MINUTES": "abc"}),
        ("SYNC_INTERVAL_MINUTES", {"SYNC_INTERVAL_MINUTES": "0"}),
        ("PUBLIC_BASE_URL", {"PUBLIC_BASE_URL": "ftp://x"}),
        ("REDIS_URL", {"REDIS_URL": "http://x"}),
        ("SECRET_KEY", {"DEBUG": "false", "SECRET_KEY": ""}),
        ("DATABASE_URL", {"DATABASE_URL": "mysql://portal@db/portal"}),
        ("MICROSOFT_CA_BUNDLE", {"MICROSOFT_CA_BUNDLE": "/nonexistent/ca.pem"}),
        ("MICROSOFT_LOGIN_BASE_URL", {"MICROSOFT_LOGIN_BASE_URL": "devcloud:8443"}),
        ("LOG_LEVEL", {"LOG_LEVEL": "loud"}),
        ("SIGN_IN_MODE", {"SIGN_IN_MODE": "sso"}),
        ("ENTRA_TENANT_ID", {"SIGN_IN_MODE": "entra"}),
        ("ENTRA_TENANT_ID", {"SIGN_IN_MODE": "both", "ENTRA_TENANT_ID": "msp.onmicrosoft.com"}),
        ("ENTRA_REQUIRE_MFA", {"ENTRA_REQUIRE_MFA": "sure"}),
    ],
)
def test_a_bad_value_stops_the_start_with_a_message_naming_the_variable(
    tmp_path, variable, overrides
):
    env = production_env(tmp_path) | overrides
    done = start_django(env)
    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert variable in last_line


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_database_url_means_the_default_sqlite_file(tmp_path, value):
    script = (
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['ENGINE'], d['NAME'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path)
        | {"DATABASE_URL": value, "DJANGO_SETTINGS_MODULE": "partner_portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["django.db.backends.sqlite3", str(tmp_path / "portal.sqlite3")]


def test_half_a_certificate_credential_is_refused(tmp_path):
    cert = tmp_path / "app.crt"
    cert.write_text("not checked here")
    done = start_django(production_env(tmp_path) | {"MICROSOFT_CERTIFICATE_PATH": str(cert)})
    assert "MICROSOFT_PRIVATE_KEY_PATH" in done.stderr.strip().splitlines()[-1]


def test_production_values_pass_check_deploy_without_warnings(tmp_path):
    done = manage(["check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_production_defaults_are_secure(tmp_path):
    script = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS > 0, s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=BASE_DIR,
        env=production_env(tmp_path) | {"DJANGO_SETTINGS_MODULE": "partner_portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split("\n")[0] == (
        "False True True True True ['portal.example.com'] ['https://portal.example.com']"
    )


def test_env_example_documents_every_variable_settings_read_in_the_same_group():
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    documented: dict[str, str] = {}
    section = ""
    for index, line in enumerate(lines):
        if header := re.match(r"^# --- (.+?) -+$", line):
            section = header.group(1)
            continue
        variable = re.match(r"^#? ?([A-Z][A-Z0-9_]*)=", line)
        if not variable:
            continue
        documented[variable.group(1)] = section
        # A comment that is not itself a variable, in the paragraph above it.
        above = []
        for previous in reversed(lines[:index]):
            if not previous.strip():
                break
            above.append(previous)
        explained = [a for a in above if a.startswith("#") and not re.match(r"^# ?[A-Z_]+=", a)]
        assert explained, f"{variable.group(1)} has no comment in .env.example"
    compose_only = {name for name, group in documented.items() if group == "docker compose"}
    assert compose_only == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    assert {k: v for k, v in documented.items() if k not in compose_only} == settings_variables()


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_with_redis_url_the_cache_and_the_broker_are_redis(tmp_path, redis_url):
    import redis

    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from django.core.cache import cache; cache.set('portal-probe', 'ok', 60); "
        "print(settings.CELERY_BROKER_URL)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env=clean_env(tmp_path, DEBUG="true", REDIS_URL=redis_url)
        | {"DJANGO_SETTINGS_MODULE": "partner_portal.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == redis_url
    assert redis.Redis.from_url(redis_url).get(":1:portal-probe") is not None
