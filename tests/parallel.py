"""pytest plugin: `pytest` runs the whole suite on two processes (pytest-xdist; pyproject's
addopts say `-n auto`), a selection on one.

This plugin answers "auto": 2 workers when pytest runs its testpaths (`pytest`,
`pytest -m chaos`…), none when given paths or node ids, where starting a second devcloud and
test database would cost more than it saves. `-n 3` decides instead, as does
PYTEST_XDIST_AUTO_NUM_WORKERS; `-n 0` runs everything in one process. Much of the suite's
time is waiting (on workers, devcloud, Chromium, schedules), which two processes overlap:
268 s instead of ~600 for the whole suite on a 2-core machine.

Each worker has its own test database (pytest-django), Redis (tests/services.py), devcloud
and Chromium (session and module fixtures); ports are chosen free, never fixed.
"""

from __future__ import annotations

import os
import random

import pytest

WORKERS_FOR_THE_WHOLE_SUITE = 2


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return 0
    return min(WORKERS_FOR_THE_WHOLE_SUITE, os.cpu_count() or 1)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Every worker must collect the same test ids, and some ids show a set's order (e.g.
    `frozenset({'object_id', 'content_type_id'})`), which depends on the process's hash
    seed: the workers, started after this, get one seed, a new one each run."""
    if getattr(config.option, "tx", None) and not os.environ.get("PYTHONHASHSEED"):
        os.environ["PYTHONHASHSEED"] = str(random.randint(1, 2**32 - 1))  # noqa: S311


# What makes a test file long: real workers, Chromium, a whole demo. Used to hand the long
# files out first, so that the last file a process runs is a short one (otherwise one
# process may run the 90 s demo test alone at the end while the other waits).
_COST = {"start_worker": 20, "demo": 60, "browser": 5, "live_server": 5}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process: the files in their usual order
    cost: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        names = item.fixturenames  # type: ignore[attr-defined]
        cost[module] = cost.get(module, 0) + 1 + sum(v for k, v in _COST.items() if k in names)
    # Stable: each file keeps its tests' order; every worker computes the same order, as
    # xdist requires (pyproject's addopts: --no-loadscope-reorder keeps it, --dist loadfile
    # hands out whole files).
    items.sort(key=lambda item: -cost[item.nodeid.split("::", 1)[0]])
