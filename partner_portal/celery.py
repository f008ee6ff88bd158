"""The Celery application: the stock Django recipe, configured from settings (CELERY_*)."""

import functools
import os
from typing import Any

from celery import Celery, signals
from celery.worker import consumer

from partner_portal import gc_freeze

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partner_portal.settings")

app = Celery("partner_portal")
# The default in every thread, not only the one that imported this module: shared tasks
# sent from other threads (runserver, gunicorn threads, live_server) must find this app.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _survive_broker_loss() -> None:
    """Keep busy workers alive when Redis goes away (a kill -9, a restart, a failover).

    With acks_late, losing the broker makes Celery's consumer close the connection and
    kombu restore the unacknowledged messages; by then the connection's transport has let
    go of its client (`transport.client = None`, and a task thread's reject may have done
    so first), and kombu's Redis channel builds its connection parameters from that client:
    AttributeError("'NoneType' object has no attribute 'hostname'"), which Celery treats as
    unrecoverable — every worker that had a task in flight exits (idle ones survive).
    Still so in kombu 5.7.0 / celery 5.7.0, the newest releases (see celery/celery#10205
    and the older celery/kombu#970 for the same path). A closed transport is a lost
    connection: say so with the connection error Celery expects, and it reconnects. The
    unacknowledged messages stay in Redis (restored after the visibility timeout), and the
    sync does not depend on them: its lease expires and the scheduler takes the tenant over.
    """
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams  # type: ignore[attr-defined]
    if getattr(original, "survives_broker_loss", False):
        return

    def _connparams(self, asynchronous=False):
        transport = self.connection
        if transport is None or transport.client is None:
            import redis

            raise redis.exceptions.ConnectionError("The broker connection was closed.")
        return original(self, asynchronous=asynchronous)

    _connparams.survives_broker_loss = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams  # type: ignore[attr-defined]


_survive_broker_loss()


class Consumer(consumer.Consumer):
    """Celery's consumer, trying a lost broker again at least every BROKER_RECONNECT_SECONDS
    (settings.CELERY_WORKER_CONSUMER names it).

    Celery passes kombu no intervals, so kombu's backoff applies: 2 s more per attempt, up
    to 30 s. After a 15-30 s outage a worker stayed deaf up to 12 s more, after a longer one
    up to 30 s, while the queue filled. One connection attempt every few seconds costs
    nothing.
    """

    def ensure_connected(self, conn):
        from django.conf import settings

        every = settings.BROKER_RECONNECT_SECONDS
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=1, interval_step=1, interval_max=every
        )
        return super().ensure_connected(conn)


def _between_statements(conn: Any) -> bool:
    """The connection has nothing open: no transaction, no query still running (a time limit
    can interrupt a task in the middle of one, and Django would not notice)."""
    if conn.in_atomic_block:
        return False
    info = getattr(conn.connection, "info", None)
    if info is not None:  # psycopg 3
        from psycopg.pq import TransactionStatus

        return bool(info.transaction_status == TransactionStatus.IDLE)
    return not getattr(conn.connection, "in_transaction", False)  # sqlite3


@signals.worker_ready.connect  # the threads pool: this process runs the tasks
@signals.worker_process_init.connect  # the prefork pool: each child
def freeze_startup_objects(**kwargs: Any) -> None:
    gc_freeze.freeze_startup_objects()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_unusable_connections(sender: Any = None, **kwargs: Any) -> None:
    """Database connections live across tasks, as Django keeps them across requests.

    Celery's Django fixup closes every connection before and after each task (CONN_MAX_AGE
    does nothing in a worker: a sync run paid for a new PostgreSQL connection) unless
    CELERY_DB_REUSE_MAX is set, which settings.py does. Celery stopped trusting Django's
    `close_if_unusable_or_obsolete` alone (celery/celery#9824): a task interrupted mid-query
    leaves a connection Django thinks usable. So a connection that is not idle between
    statements is closed here; the others follow Django's rules (CONN_MAX_AGE, errors, and
    CONN_HEALTH_CHECKS before the next task's first query)."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # runs in the caller's process, inside its connection's life
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not _between_statements(conn):
            conn.close()
        else:
            conn.close_if_unusable_or_obsolete()
