"""devcloud for the sync tests: one emulator process per test session (TLS, its own CA).

TEMPORARY until the devcloud branch's `tests/devcloud_fixture.py` plugin lands; the
fixture names are the same (`devcloud`, `devcloud_settings`).
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.conftest import service_unavailable
from tests.workers import ROOT

SECRET = "sync-tests-secret-value"


@pytest.fixture(scope="session")
def devcloud_process(tmp_path_factory):
    state = tmp_path_factory.mktemp("devcloud")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devcloud", "--port", "0", "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    facts = {}
    for line in proc.stdout:
        if line.startswith("devcloud ready"):
            break
        if line.startswith("devcloud ") and "=" in line:
            key, _, value = line[len("devcloud ") :].strip().partition("=")
            facts[key] = value
    else:
        service_unavailable("devcloud")
    yield facts
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def devcloud(devcloud_process):
    from devcloud.client import DevCloud

    dc = DevCloud(devcloud_process["base_url"], devcloud_process["ca_file"])
    dc.reset()
    return dc


@pytest.fixture
def devcloud_settings(devcloud, settings):
    client_id = str(uuid.uuid4())
    app = devcloud.create_app(client_id=client_id, display_name="Partner Portal", secrets=[SECRET])
    settings.MICROSOFT_CLIENT_ID = client_id
    settings.MICROSOFT_CLIENT_SECRET = SECRET
    settings.MICROSOFT_LOGIN_BASE_URL = devcloud.base_url
    settings.MICROSOFT_DEFENDER_BASE_URL = devcloud.base_url
    settings.MICROSOFT_CA_BUNDLE = devcloud.ca_file
    from partner_portal.microsoft import tokens

    tokens._apps.clear()
    return {**app, "client_id": client_id}
