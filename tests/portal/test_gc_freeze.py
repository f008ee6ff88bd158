"""The web and worker processes put their startup objects out of the garbage collector's
sight (partner_portal/gc_freeze.py): each in a process of its own, as they start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.portal.settings_source import BASE_DIR, clean_env

WEB = "import gc, partner_portal.wsgi; print(gc.get_freeze_count())"
WORKER = (
    "import gc, django; django.setup(); from celery import signals; "
    "from partner_portal.celery import app; before = gc.get_freeze_count(); "
    "signals.worker_ready.send(sender=None); print(before, gc.get_freeze_count())"
)


def frozen_counts(tmp_path, code: str) -> list[int]:
    done = subprocess.run(  # noqa: S603 (our own interpreter and code)
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=clean_env(tmp_path, DEBUG="true", DJANGO_SETTINGS_MODULE="partner_portal.settings"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [int(n) for n in done.stdout.split()]


@pytest.mark.parametrize("code", [WEB, WORKER], ids=["web", "worker"])
def test_a_started_process_freezes_what_it_loaded(tmp_path, code):
    *before, after = frozen_counts(tmp_path, code)
    assert before in ([], [0])  # nothing frozen by importing settings or the Celery app
    assert after > 10_000  # Django and the apps: ~140,000 objects
