"""The devcloud process: TLS with its own CA kept across restarts, plain HTTP for the consent
page, the demo scenario, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devcloud import launcher
from devcloud.scenarios import DEMO_TENANTS

pytestmark = pytest.mark.integration


def test_restart_keeps_the_ca_and_the_certificate_names(tmp_path):
    first = launcher.start(tmp_path)
    ca = Path(first.ca_file).read_bytes()
    assert first.stop() == 0
    assert first.output[-1] == "devcloud stopped"
    second = launcher.start(tmp_path)
    try:
        assert Path(second.ca_file).read_bytes() == ca
        port = second.base_url.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "localhost"):
            s = requests.Session()
            s.trust_env = False
            s.verify = second.ca_file
            assert s.get(f"https://{host}:{port}/_devcloud/health").status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            plain = requests.Session()
            plain.trust_env = False
            plain.get(f"{second.base_url}/_devcloud/health")
    finally:
        second.stop()


def test_the_ca_is_a_real_ca_for_the_ssl_module(devcloud_server):
    context = ssl.create_default_context(cafile=devcloud_server.ca_file)
    host, port = re.match(r"https://(.+):(\d+)", devcloud_server.base_url).groups()
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_demo_scenario_serves_the_consent_page_over_plain_http(tmp_path):
    server = launcher.start(tmp_path, "--scenario", "demo", "--http-port", "0")
    try:
        http_base = server.http_base_url
        tenants = server.client.tenants()
        assert [t["tenant_id"] for t in tenants] == [t[0] for t in DEMO_TENANTS]
        assert all(50 <= t["incident_count"] <= 300 for t in tenants)
        app = server.client.create_app(
            display_name="Partner Portal (demo)",
            secrets=[{"value": "x" * 20}],
            redirect_uris=["http://127.0.0.1:8000/consent/callback/"],
        )
        for t in tenants:
            assert server.client.consent(t["tenant_id"], app["client_id"])["state"] == "none"
        plain = requests.Session()
        plain.trust_env = False
        url = (
            f"{http_base}/organizations/v2.0/adminconsent?client_id={app['client_id']}"
            "&redirect_uri=http://127.0.0.1:8000/consent/callback/&state=abc"
            "&scope=https://api.security.microsoft.com/.default"
        )
        page = plain.get(url)
        assert page.status_code == 200 and "Contoso" in page.text
        done = plain.post(
            url,
            data={"account": f"{DEMO_TENANTS[0][0]}|admin", "action": "accept"},
            allow_redirects=False,
        )
        assert done.headers["Location"].startswith("http://127.0.0.1:8000/consent/callback/?")
        # Discovery reached over plain HTTP still points MSAL at the HTTPS endpoints.
        doc = plain.get(f"{http_base}/{DEMO_TENANTS[0][0]}/v2.0/.well-known/openid-configuration")
        assert doc.json()["token_endpoint"].startswith(server.base_url)
    finally:
        server.stop()


def test_sigint_stops_it_too(tmp_path):
    server = launcher.start(tmp_path)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(10) == 0


def test_devcloud_never_imports_the_portal():
    code = (
        "import sys, devcloud.__main__, devcloud.client; "
        "print(any(m.startswith(('partner_portal', 'django')) for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=launcher.ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_the_ready_line_is_its_last_before_serving_and_says_where_it_serves(tmp_path):
    server = launcher.start(tmp_path, "--http-port", "0")
    try:
        ready = [line for line in server.output if line.startswith("devcloud ready ")]
        assert len(ready) == 1
        facts = json.loads(ready[0].removeprefix("devcloud ready "))
        assert facts == server.facts
        assert set(facts) == {"base_url", "ca_file", "state_dir", "http_base_url"}
        assert Path(facts["ca_file"]).is_file()
        assert facts["state_dir"] == str(tmp_path.resolve())
        assert server.client.tenants() == []  # it answers as soon as it says so
    finally:
        server.stop()


def test_a_devcloud_that_cannot_start_is_reported_with_its_output(tmp_path):
    with pytest.raises(launcher.StartFailed, match="usage: python -m devcloud"):
        launcher.start(tmp_path, "--scenario", "no-such-scenario")
