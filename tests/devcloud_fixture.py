"""pytest plugin: a real devcloud process for the whole session, reset before each test.

Registered in tests/conftest.py. The process is started by devcloud's own launcher.

- `devcloud_server` (session): devcloud.launcher's RunningDevCloud, started with
  `--port 0 --http-port 0` (failure is a test error, never a skip), stopped at the end.
- `devcloud` (function): the control-API client, after a reset (tenants, apps, faults, log,
  limits all back to empty/defaults). `.base_url` is HTTPS; `.http_base_url` serves the same
  app over plain HTTP (for the consent page in a browser).
- `http` (function): a requests Session that trusts devcloud's CA.
- `devcloud_settings` (function): points the MICROSOFT_* settings at devcloud and registers
  a fresh app (client id + secret) whose redirect URI is the portal's consent callback.
"""

from __future__ import annotations

import secrets
import uuid

import pytest

from devcloud import launcher
from devcloud.client import DevCloud


@pytest.fixture(scope="session")
def devcloud_server(tmp_path_factory):
    try:
        server = launcher.start(tmp_path_factory.mktemp("devcloud"), "--http-port", "0")
    except launcher.StartFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def devcloud(devcloud_server) -> DevCloud:
    client = devcloud_server.client
    client.reset()  # also clears faults, the request log and limits
    return client


@pytest.fixture
def http(devcloud):
    session = devcloud.session()
    yield session
    session.close()


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
    settings.MICROSOFT_GRAPH_BASE_URL = devcloud.base_url
    settings.MICROSOFT_CA_BUNDLE = devcloud.ca_file
    settings.MICROSOFT_CLIENT_ID = app["client_id"]
    settings.MICROSOFT_CLIENT_SECRET = secret
    return {**app, "secret": secret}
