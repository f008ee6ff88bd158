"""Fetching the next page of a listing while this one is stored.

A big listing (a new tenant's history, a reconciliation pass) alternates waiting on
Microsoft and waiting on the database; reading one page ahead in a thread overlaps the two,
the sync's own work with neither. At most one page waits (memory stays flat), and the
listing's iterator is only ever advanced by one thread at a time, so the client it belongs
to needs no locking: it is used by that thread until the listing ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar, cast

from django.db import connections, transaction

T = TypeVar("T")

_END = object()
Slot = queue.Queue[tuple[object, BaseException | None]]


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items of `items`, the next one fetched in a thread while the caller works on
    this one; an exception of the iterator is raised in the caller, in its turn (after the
    items before it). The first item is fetched inline: a listing of one page (most runs)
    starts no thread. Inside a transaction (a test's), no thread: its connection could not
    see the uncommitted rows, nor get past their locks.
    """
    try:
        yield next(items)
    except StopIteration:
        return
    if transaction.get_connection().in_atomic_block:
        yield from items
        return
    ready: Slot = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for item in items:
                if not _put(ready, (item, None), stop):
                    return
            _put(ready, (_END, None), stop)
        except BaseException as exc:  # delivered to the caller, raised there
            _put(ready, (_END, exc), stop)
        finally:
            connections.close_all()  # this thread's, if the client's cache used the database

    thread = threading.Thread(target=fetch, daemon=True, name="sync-read-ahead")
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield cast(T, item)
    finally:
        # The caller stopped early (lease lost, time limit): the thread drops what it
        # fetched and ends after its call in flight.
        stop.set()


def _put(ready: Slot, entry: tuple[object, BaseException | None], stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            ready.put(entry, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False
