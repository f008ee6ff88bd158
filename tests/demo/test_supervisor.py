"""The demo's process supervisor with small Python children: restarts, reports, clean stops."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from partner_portal.demo import supervisor
from partner_portal.demo.supervisor import Supervisor
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXITS_AT_ONCE = "print('up', flush=True); raise SystemExit(3)"


@pytest.fixture
def output():
    return io.StringIO()


@pytest.fixture
def processes(output):
    running = Supervisor(output, cwd=ROOT, stop_timeout=5)
    yield running
    running.stop_all()


def test_a_restartable_child_is_started_again_and_waits_longer_while_it_keeps_exiting(
    processes, output, monkeypatch
):
    monkeypatch.setattr(supervisor, "FIRST_RESTART_DELAY", 0.05)
    lines: list[str] = []
    argv = [sys.executable, "-c", EXITS_AT_ONCE]
    env = dict(os.environ)
    worker = processes.start("worker", argv, env=env, on_line=lines.append, restart=True)

    def restarted_three_times() -> bool:
        assert processes.poll() is None  # a restartable child is never reported as dead
        return worker.restarts >= 3

    wait_until(restarted_three_times, timeout=20, what="three restarts")
    wait_until(lambda: lines.count("up") >= 3, timeout=10, what="the restarted children's output")
    said = output.getvalue()
    for delay in ("0.05", "0.1", "0.2"):  # it exits at once every time: twice the last delay
        assert f"worker exited with status 3: starting it again in {delay} s\n" in said
    assert "worker   | up\n" in said


def test_a_child_that_runs_steadily_before_it_exits_is_started_again_at_once(
    processes, output, monkeypatch
):
    monkeypatch.setattr(supervisor, "FIRST_RESTART_DELAY", 0.05)
    monkeypatch.setattr(supervisor, "STEADY_SECONDS", 0.0)  # every run counts as a long one
    argv = [sys.executable, "-c", EXITS_AT_ONCE]
    beat = processes.start("beat", argv, env=dict(os.environ), restart=True)
    wait_until(lambda: processes.poll() is None and beat.restarts >= 3, timeout=20)
    assert "starting it again in 0.1 s" not in output.getvalue()


def test_any_other_child_that_exits_is_reported_and_not_started_again(processes):
    web = processes.start("web", [sys.executable, "-c", EXITS_AT_ONCE], env=dict(os.environ))
    assert wait_until(processes.poll, timeout=20, what="the exit to be reported") is web
    assert web.proc.returncode == 3
    assert web.restarts == 0


def test_stop_all_kills_a_child_that_ignores_sigterm_and_its_grandchild(processes, output):
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    lines: list[str] = []
    processes.stop_timeout = 0.5
    argv = [sys.executable, "-c", stubborn]
    processes.start("web", argv, env=dict(os.environ), on_line=lines.append)
    grandchild = int(wait_until(lambda: lines and lines[0], timeout=20, what="the grandchild"))

    processes.stop_all()

    assert processes.children[0].proc.returncode == -9
    assert "web did not stop in 0.5 s: killing it" in output.getvalue()
    wait_until(lambda: not _running(grandchild), timeout=10, what="the grandchild to be gone")


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
