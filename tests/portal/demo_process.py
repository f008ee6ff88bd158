"""`manage.py demo` as a subprocess for tests, under the demo's own supervisor: free ports, its
output with waits, and a stop that leaves nothing behind. Shared by tests/portal/test_demo*.py."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from partner_portal.demo.supervisor import Supervisor
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
    """The demo's output, line by line as the supervisor reads it, with waits on what it says."""

    def __init__(self) -> None:
        self.text = ""
        self.changed = threading.Condition()

    def add(self, line: str) -> None:
        with self.changed:
            self.text += line + "\n"
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (match := re.search(pattern, self.text, re.MULTILINE)):
                left = deadline - time.monotonic()
                assert left > 0, f"no {pattern!r} in the demo's output:\n{self.text}"
                self.changed.wait(left)
        return match


@dataclass
class Demo:
    proc: subprocess.Popen
    output: Output
    base_url: str
    env: dict[str, str]

    def credentials(self, timeout: float = STARTUP_TIMEOUT) -> tuple[str, str]:
        """The username and password the banner prints once the web server answers."""
        found = self.output.wait_for(r"username: (\S+)\n\s+password: (\S+)", timeout)
        return found.group(1), found.group(2)


@contextlib.contextmanager
def running_demo(var_dir: Path) -> Iterator[Demo]:
    """`manage.py demo` on free ports with its state under var_dir, as on a bare machine (no
    DATABASE_URL, REDIS_URL or .env), run by the demo's own supervisor (quietly); stopped with
    SIGTERM, then anything left is killed."""
    port = free_port()
    env = clean_env(var_dir)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set while Playwright runs; not for the demo
    output = Output()
    supervisor = Supervisor(None, cwd=BASE_DIR, stop_timeout=STOP_TIMEOUT)
    argv = [sys.executable, "manage.py", "demo", f"--port={port}"]
    argv += [f"--devcloud-port={free_port()}", f"--devcloud-http-port={free_port()}"]
    # The tests wait for the worker's and beat's INFO lines ("ready.").
    argv.append("--verbose")
    demo = supervisor.start("demo", argv, env=env, on_line=output.add)
    try:
        yield Demo(proc=demo.proc, output=output, base_url=f"http://127.0.0.1:{port}", env=env)
    finally:
        # After a failure: the demo's children have process groups of their own, which
        # stopping the demo's group does not reach if the demo dies first.
        children = descendants(demo.proc.pid)
        supervisor.stop_all()
        for pid, _ in alive(children):
            os.kill(pid, signal.SIGKILL)
