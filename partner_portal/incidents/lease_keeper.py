"""Renews the leases of this process's running syncs while they wait on slow calls.

A run renews its lease with every page; between pages (a slow answer, a long page) one
thread per process renews every run's lease each third of a lease, up to the task's time
limit: a live run never loses its tenant, a dead or stuck one does within one lease. One
thread for all runs, started once: a schedule cycle runs a sync per tenant, most of them
over in well under a third of a lease, which then cost the keeper nothing but a dict entry.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from partner_portal.tenants.models import Tenant, lease_seconds

logger = logging.getLogger(__name__)

# lease token → (tenant pk, its next renewal, renewals until: both time.monotonic())
_held: dict[str, tuple[int, float, float]] = {}
_lock = threading.Lock()
_thread: threading.Thread | None = None


class held:
    """`with held(tenant_pk, token): ...` keeps the lease renewed for the block."""

    def __init__(self, tenant_pk: int, token: str) -> None:
        self.tenant_pk = tenant_pk
        self.token = token

    def __enter__(self) -> held:
        # In a test's transaction the lease is not committed: another connection would
        # neither see it nor get past its row lock.
        if not transaction.get_connection().in_atomic_block:
            now = time.monotonic()
            deadline = now + settings.SYNC_TASK_TIME_LIMIT
            with _lock:
                _held[self.token] = (self.tenant_pk, now + _interval(), deadline)
                _start()
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _held.pop(self.token, None)


def _start() -> None:
    global _thread
    # Also after a fork (a prefork pool's child): the parent's thread is not in the child.
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_keep, daemon=True, name="sync-leases")
        _thread.start()


def _interval() -> float:
    return max(lease_seconds() / 3, 0.2)


def _keep() -> None:
    while True:
        time.sleep(min(_interval(), 1.0))
        now = time.monotonic()
        with _lock:
            due = [(token, held) for token, held in _held.items() if held[1] <= now]
        for token, (tenant_pk, _, deadline) in due:
            renewed = now <= deadline and _renew(tenant_pk, token)
            with _lock:
                if not renewed:
                    _held.pop(token, None)
                elif token in _held:  # not over meanwhile
                    _held[token] = (tenant_pk, now + _interval(), deadline)
        if due:  # renewals are rare: no connection kept open in between
            connections.close_all()


def _renew(tenant_pk: int, token: str) -> bool:
    """False once the lease is lost: the run's next page fence stops it."""
    try:
        rows = Tenant.objects.filter(pk=tenant_pk, sync_lease_token=token)
        with transaction.atomic():
            # A row locked by the run's page being written (longer than a lease, under load):
            # the page renews the lease as it commits. Waiting for it would hold up every
            # other run's renewal, and then write a lease older than the page's.
            if not rows.select_for_update(skip_locked=True).values_list("pk", flat=True):
                return rows.exists()  # locked, still ours; or lost
            until = timezone.now() + timedelta(seconds=lease_seconds())
            return rows.update(sync_lease_until=until) == 1
    except DatabaseError:
        logger.warning("Could not renew the sync lease of tenant %s", tenant_pk)
        return True
