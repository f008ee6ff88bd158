"""`manage.py demo` on a bare machine: it serves the login page, the printed credentials sign in
over real HTTP, and SIGTERM stops every process it started (grandchildren included)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.portal.settings_source import BASE_DIR, clean_env

STARTUP_TIMEOUT = 120
STOP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, start time) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int) -> set[tuple[int, str]]:
    table = process_table()
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and (pid, started) not in found:
                found.add((pid, started))
                todo.append(pid)
    return found


def alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    table = process_table()
    return {(pid, started) for pid, started in processes if table.get(pid, (0, ""))[1] == started}


class Output:
    """The demo's output, collected by a thread, with waits on what it says."""

    def __init__(self, stream) -> None:
        self.text = ""
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in iter(stream.readline, ""):
            with self.changed:
                self.text += line
                self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (match := re.search(pattern, self.text, re.MULTILINE)):
                left = deadline - time.monotonic()
                assert left > 0, f"no {pattern!r} in the demo's output:\n{self.text}"
                self.changed.wait(left)
        return match


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    env = clean_env(tmp_path)  # no DATABASE_URL or REDIS_URL: the bare-machine path
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "demo",
            f"--port={port}",
            f"--devcloud-port={free_port()}",
            f"--devcloud-http-port={free_port()}",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc.stdout)
    try:
        yield proc, output, f"http://127.0.0.1:{port}", env
    finally:
        # After a failure: stop it the polite way, then make sure nothing is left behind.
        if proc.poll() is None:
            children = descendants(proc.pid)
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid, _ in alive(children):
                os.kill(pid, signal.SIGKILL)


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

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_TIMEOUT) == 0, output.text
    deadline = time.monotonic() + 5
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(started), f"left running: {alive(started)}"
    output.thread.join(timeout=5)
    assert "Demo stopped." in output.text
    if secret:
        assert secret not in output.text
