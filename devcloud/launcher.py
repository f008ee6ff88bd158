"""Start devcloud as a process on free ports and stop it: for tests and benchmarks.

    server = launcher.start(state_dir, "--http-port", "0")
    server.client.create_tenant(...)
    server.stop()

devcloud says it serves with one line, `devcloud ready {"base_url": …, "ca_file": …,
"state_dir": …, "http_base_url": …}` (http_base_url only with --http-port); `ready_facts`
reads it. `manage.py demo` reads the same line with a few lines of its own: the portal
imports nothing from devcloud.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .client import DevCloud

READY_PREFIX = "devcloud ready "
ROOT = Path(__file__).resolve().parent.parent  # where `python -m devcloud` finds the package


class StartFailed(Exception):
    """devcloud exited or stayed silent before its ready line; the message ends with its output."""


def ready_facts(line: str) -> dict[str, str] | None:
    """The facts of a `devcloud ready {...}` line, None for any other line."""
    if not line.startswith(READY_PREFIX):
        return None
    try:  # a garbled line must not kill the thread that drains the pipe
        facts = json.loads(line[len(READY_PREFIX) :])
    except ValueError:
        return None
    return facts if isinstance(facts, dict) and "base_url" in facts else None


@dataclass
class RunningDevCloud:
    process: subprocess.Popen[str]
    facts: dict[str, str]
    client: DevCloud
    # Every line it printed; `reader` keeps draining stdout so that the pipe never fills up.
    output: list[str]
    reader: threading.Thread

    @property
    def base_url(self) -> str:
        return self.facts["base_url"]

    @property
    def ca_file(self) -> str:
        return self.facts["ca_file"]

    @property
    def http_base_url(self) -> str | None:
        """The plain-HTTP twin (same app), with --http-port: for browsers' consent page."""
        return self.facts.get("http_base_url")

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM (devcloud stops cleanly on it), SIGKILL after `timeout`; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait(5)
        self.reader.join(5)  # `output` then holds its last words
        return status


def start(state_dir: Path | str, *args: str, timeout: float = 30) -> RunningDevCloud:
    """`python -m devcloud --port 0 --state-dir state_dir *args`, once it is ready.

    Raises StartFailed if it exits or does not say `devcloud ready` within `timeout` seconds.
    """
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "devcloud", "--port", "0", "--state-dir", str(state_dir), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    facts: dict[str, str] = {}
    done = threading.Event()  # ready, or stdout closed (it exited)

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line.rstrip("\n"))
            if not facts and (found := ready_facts(output[-1])) is not None:
                facts.update(found)
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True, name="devcloud-stdout")
    reader.start()
    if not done.wait(timeout) or not facts:
        process.kill()
        process.wait(5)
        raise StartFailed("devcloud did not start:\n" + "\n".join(output[-40:]))
    client = DevCloud(facts["base_url"], facts["ca_file"], http_base_url=facts.get("http_base_url"))
    return RunningDevCloud(process, facts, client, output, reader)
