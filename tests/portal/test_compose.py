"""docker-compose.yml and the Dockerfile, checked without Docker (it cannot run here): the
services exist, their commands name real entry points, and they set only variables that
settings.py reads."""

from __future__ import annotations

import importlib
import shlex

import pytest
import yaml
from celery import Celery

from tests.portal.settings_source import BASE_DIR, clean_env, manage, settings_variables

APP_SERVICES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def argv(service: dict) -> list[str]:
    command = service["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2].replace("&&", " && "))
    return words


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_the_services_exist_and_wait_for_healthy_databases(compose):
    services = compose["services"]
    assert set(services) == {*APP_SERVICES, "postgres", "redis", "devcloud"}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["env_file"] == ".env"
        assert service["image"] == "partner-portal" and service["build"] == "."
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["devcloud"]["profiles"] == ["demo"]
    assert "profiles" not in services["web"]


def test_web_migrates_then_serves_the_wsgi_application_with_gunicorn(compose):
    words = argv(compose["services"]["web"])
    assert words[:4] == ["python", "manage.py", "migrate", "--noinput"]
    gunicorn = words[words.index("gunicorn") :]
    module = importlib.import_module(gunicorn[1])
    assert callable(module.application)


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_worker_and_beat_run_the_portals_celery_app(compose, name):
    words = argv(compose["services"][name])
    assert words[:4] == ["celery", "-A", "partner_portal", name]
    app = importlib.import_module(f"{words[2]}.celery").app
    assert isinstance(app, Celery) and app.main == "partner_portal"


def test_beat_uses_the_database_scheduler_which_imports(compose):
    words = argv(compose["services"]["beat"])
    module, _, cls = option(words, "--scheduler").partition(":")
    scheduler = getattr(importlib.import_module(module), cls)
    assert scheduler.__name__ == "DatabaseScheduler"


def test_app_services_set_only_variables_settings_read(compose):
    known = settings_variables()
    for name in APP_SERVICES:
        environment = compose["services"][name].get("environment", {})
        assert set(environment) <= set(known), f"{name}: {set(environment) - set(known)}"


def test_the_image_is_python_311_slim_runs_as_a_user_and_collects_static_files():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert ".env" in (BASE_DIR / ".dockerignore").read_text().splitlines()


def test_collectstatic_builds_the_manifest_as_at_image_build(tmp_path):
    # The build's command, with the same settings (DEBUG off: WhiteNoise's manifest storage).
    done = manage(
        ["collectstatic", "--noinput"], clean_env(tmp_path, SECRET_KEY="build-only-not-secret")
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "staticfiles" / "staticfiles.json").is_file()


def test_the_readme_quick_start_is_two_commands_and_ci_runs_the_second():
    readme = (BASE_DIR / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("\n", 1)[1].strip() for block in quick_start.split("```sh")[1:]]
    commands = [block.split("```")[0].strip() for block in blocks]
    assert len(commands) == 2
    assert commands[0].endswith("python manage.py demo")
    assert "pip install -r requirements.txt" in commands[0]
    assert commands[1] in (BASE_DIR / ".ci" / "run").read_text().splitlines()
    assert "docs/screenshot-incidents.png" in readme


def test_redis_requires_a_password_that_redis_url_carries_and_no_argv_shows(compose):
    # Info (issue 12): Django's cache unpickles what it reads, so Redis must not be open.
    redis = compose["services"]["redis"]
    script = redis["command"][2]
    assert "requirepass" in script and "| exec redis-server -" in script  # config on stdin
    assert "--requirepass" not in script
    assert redis["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    assert redis["user"] == "redis"
    url = compose["x-app"]["environment"]["REDIS_URL"]
    assert url == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0"
    example = (BASE_DIR / ".env.example").read_text()
    assert "\nREDIS_PASSWORD=" in example
