"""Run a few processes side by side, show their output, restart the ones that may be restarted,
and stop them all without leaving anything behind. Used by `manage.py demo` (devcloud, web,
worker, beat) and by the tests that run the demo itself.

Each child runs in its own process group: a terminal's Ctrl-C reaches only the supervising
process, which then stops the children in order, and signalling a group also reaches the
grandchildren (a Celery pool, runserver's threads).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# A child that ran this long before it exited is restarted at once; one that exits sooner
# waits twice as long as the last time (up to MAX_RESTART_DELAY): no crash loop on a broker
# that is down, and a quick return once it is back.
STEADY_SECONDS = 60.0
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    on_line: Callable[[str], None] | None
    restart: bool
    proc: subprocess.Popen[bytes] = field(init=False)
    started_at: float = 0.0
    restarts: int = 0
    restart_delay: float = 0.0
    restart_at: float | None = None  # set while an exited child waits for its restart
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    def __init__(self, out: IO[str] | None, *, cwd: Path | str, stop_timeout: float) -> None:
        self.out = out  # None: run quietly (on_line callbacks still see every line)
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.write_lock = threading.Lock()
        self.width = len("devcloud") + 1

    def say(self, text: str) -> None:
        if self.out is None:
            return
        with self.write_lock:
            self.out.write(text + "\n")
            self.out.flush()

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        on_line: Callable[[str], None] | None = None,
        restart: bool = False,
    ) -> Child:
        """Start `argv`; `on_line` sees each line it prints. A `restart` child that exits is
        started again by `poll`; any other child that exits is reported by it."""
        child = Child(name=name, argv=argv, env=env, on_line=on_line, restart=restart)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(  # noqa: S603 (argv is built by the caller, not input)
            child.argv,
            cwd=self.cwd,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        reader = threading.Thread(
            target=self._copy_output, args=(child, child.proc), name=f"out-{child.name}"
        )
        reader.daemon = True
        child.readers.append(reader)
        reader.start()

    def _copy_output(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        prefix = f"{child.name:<{self.width}}| "
        for raw in iter(proc.stdout.readline, b""):  # type: ignore[union-attr]
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if child.on_line is not None:
                child.on_line(line)
            self.say(prefix + line)

    def poll(self) -> Child | None:
        """Restart the restartable children that exited (after their delay); return the first
        other child that exited, if any."""
        now = time.monotonic()
        for child in self.children:
            status = child.proc.poll()
            if status is None:
                continue
            if not child.restart:
                return child
            if child.restart_at is None:
                steady = now - child.started_at >= STEADY_SECONDS
                child.restart_delay = (
                    FIRST_RESTART_DELAY
                    if steady or not child.restart_delay
                    else min(child.restart_delay * 2, MAX_RESTART_DELAY)
                )
                child.restart_at = now + child.restart_delay
                self.say(
                    f"{child.name} exited with status {status}: "
                    f"starting it again in {child.restart_delay:g} s"
                )
            elif now >= child.restart_at:
                # What the old process left in its group (a pool child) must not linger.
                _signal_group(child.proc.pid, signal.SIGKILL)
                child.restarts += 1
                self._spawn(child)
        return None

    def wait(self, condition: threading.Event, timeout: float) -> bool:
        """Wait for `condition`; False on timeout, on a stop request or when a child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition.wait(0.2):
                return True
            if self.stop_requested.is_set() or self.poll():
                return False
        return False

    def stop_all(self) -> None:
        """SIGTERM every process group, wait up to stop_timeout, then SIGKILL what is left."""
        running = [c for c in self.children if c.proc.poll() is None]
        if running:
            self.say(f"Stopping {', '.join(c.name for c in running)}…")
        for child in reversed(running):
            _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in {self.stop_timeout:g} s: killing it")
        # Also sweeps grandchildren that outlived their parent (they keep its group).
        for child in self.children:
            _signal_group(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        for child in self.children:
            for reader in child.readers:
                reader.join(timeout=2)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signum)
