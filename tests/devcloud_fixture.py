"""pytest plugin: a real devcloud process for the whole session, reset before each test.

Register with `pytest_plugins = ["tests.devcloud_fixture"]` in tests/conftest.py.

- `devcloud_server` (session): starts `python -m devcloud --port 0 --http-port 0`, waits for
  `devcloud ready` (failure is a test error, never a skip), stops it with SIGTERM at the end.
- `devcloud` (function): the control-API client, after a reset (tenants, apps, faults, log,
  limits all back to empty/defaults). `.base_url` is HTTPS; `.http_base_url` serves the same
  app over plain HTTP (for the consent page in a browser).
- `devcloud_settings` (function): points the MICROSOFT_* settings at devcloud and registers
  a fresh app (client id + secret) whose redirect URI is the portal's consent callback.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from devcloud.client import DevCloud

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30


@dataclass
class DevCloudServer:
    base_url: str
    ca_file: str
    client: DevCloud
    process: subprocess.Popen
    output: list[str]
    # Plain-HTTP twin (same app) for browsers that must not see a certificate warning.
    http_base_url: str | None = None


def start_devcloud(state_dir: Path, *extra: str) -> DevCloudServer:
    """Start devcloud as a subprocess and wait for its `devcloud ready` line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "devcloud", "--port", "0", "--state-dir", str(state_dir), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    facts: dict[str, str] = {}
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        # Keeps draining stdout for the whole session so the pipe never fills up.
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line.rstrip("\n"))
            if line.startswith("devcloud "):
                fact = line[len("devcloud ") :].strip()
                if fact == "ready":
                    ready.set()
                elif "=" in fact:
                    key, _, value = fact.partition("=")
                    facts.setdefault(key, value)
        ready.set()

    threading.Thread(target=read, daemon=True, name="devcloud-stdout").start()
    if not ready.wait(START_TIMEOUT) or "base_url" not in facts or process.poll() is not None:
        process.kill()
        pytest.fail("devcloud did not start:\n" + "\n".join(output[-40:]), pytrace=False)
    client = DevCloud(facts["base_url"], facts["ca_file"], http_base_url=facts.get("http_base_url"))
    client.wait_ready(10)
    return DevCloudServer(
        facts["base_url"], facts["ca_file"], client, process, output, facts.get("http_base_url")
    )


def stop_devcloud(server: DevCloudServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(5)


@pytest.fixture(scope="session")
def devcloud_server(tmp_path_factory):
    server = start_devcloud(tmp_path_factory.mktemp("devcloud"), "--http-port", "0")
    yield server
    stop_devcloud(server)


@pytest.fixture
def devcloud(devcloud_server) -> DevCloud:
    client = devcloud_server.client
    client.reset()  # also clears faults, the request log and limits
    return client


@pytest.fixture
def devcloud_settings(settings, devcloud) -> dict:
    """The portal configured for devcloud, with a freshly registered app (dict + "secret")."""
    secret = secrets.token_urlsafe(24)
    app = devcloud.create_app(
        client_id=str(uuid.uuid4()),
        display_name="Partner Portal (tests)",
        secrets=[{"value": secret}],
        redirect_uris=[settings.PUBLIC_BASE_URL + "/consent/callback/"],
        required_permissions=["Incident.Read.All"],
    )
    settings.MICROSOFT_LOGIN_BASE_URL = devcloud.base_url
    settings.MICROSOFT_DEFENDER_BASE_URL = devcloud.base_url
    settings.MICROSOFT_CA_BUNDLE = devcloud.ca_file
    settings.MICROSOFT_CLIENT_ID = app["client_id"]
    settings.MICROSOFT_CLIENT_SECRET = secret
    return {**app, "secret": secret}
