"""`manage.py demo` on a bare machine: it serves the login page, the printed credentials sign in
over real HTTP, a killed worker is started again, and SIGTERM stops every process it started
(grandchildren included)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.portal.demo_process import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    alive,
    descendants,
    running_demo,
)
from tests.portal.settings_source import BASE_DIR


@pytest.fixture
def demo(tmp_path):
    with running_demo(tmp_path) as demo:
        yield demo.proc, demo.output, demo.base_url, demo.env


def test_the_demo_serves_the_portal_signs_in_its_user_and_stops_without_orphans(demo):
    proc, output, base_url, env = demo
    credentials = output.wait_for(r"username: (\S+)\n\s+password: (\S+)", STARTUP_TIMEOUT)
    output.wait_for(r"^worker +\| .* ready\.$", STARTUP_TIMEOUT)
    output.wait_for(r"^beat +\| .*beat: Starting", STARTUP_TIMEOUT)
    output.wait_for(r"^web +\| Starting development server", STARTUP_TIMEOUT)
    username, password = credentials.groups()

    started = descendants(proc.pid)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in started}
    assert any(b"runserver" in c for c in commands.values())
    assert any(b"worker" in c for c in commands.values())
    assert any(b"beat" in c for c in commands.values())
    secret = ""
    if importlib.util.find_spec("devcloud"):  # merged: the demo must have wired it up
        assert "Registered the demo app in devcloud" in output.text
        web = next(pid for pid, c in commands.items() if b"runserver" in c)
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{web}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        secret = environ[b"MICROSOFT_CLIENT_SECRET"].decode()
        assert secret
        assert Path(environ[b"MICROSOFT_CA_BUNDLE"].decode()).is_file()

    session = requests.Session()
    session.trust_env = False  # no proxy between us and loopback
    login = session.get(f"{base_url}/login/", timeout=10)
    assert login.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed_in = session.post(
        f"{base_url}/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        timeout=10,
    )
    assert signed_in.status_code == 200
    assert signed_in.url == f"{base_url}/"
    assert username in signed_in.text and "Sign out" in signed_in.text
    started |= descendants(proc.pid)
    # Alerting out of the box: the demo's rule, and beat running the dispatcher.
    alerts = session.get(f"{base_url}/alerts/", timeout=10).text
    assert "High and above, all tenants" in alerts and "Console email" in alerts
    output.wait_for(r"^worker +\| .*tasks\.dispatch_alerts\[.*\] succeeded", 60)

    # A task sent from another process reaches the demo's worker through the embedded broker.
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "partner_portal", "call", "celery.accumulate"],
        cwd=BASE_DIR,
        env=env | {"DEBUG": "true"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    output.wait_for(r"^worker +\| .*Task celery\.accumulate\[.*\] succeeded", 30)

    # A worker that dies (here: killed, as the OOM killer would) is started again and works.
    worker = next(pid for pid, c in commands.items() if b"celery" in c and b"worker" in c)
    os.killpg(worker, signal.SIGKILL)
    output.wait_for(
        r"^worker exited with status -9: starting it again in 1 s$[\s\S]*^worker +\| .* ready\.$",
        STARTUP_TIMEOUT,
    )
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "partner_portal", "call", "celery.accumulate"],
        cwd=BASE_DIR,
        env=env | {"DEBUG": "true"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    output.wait_for(r"(Task celery\.accumulate\[.*\] succeeded[\s\S]*){2}", 30)
    started |= descendants(proc.pid)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_TIMEOUT) == 0, output.text
    deadline = time.monotonic() + 5
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(started), f"left running: {alive(started)}"
    output.wait_for(r"^Demo stopped\.$", 5)
    if secret:
        assert secret not in output.text
