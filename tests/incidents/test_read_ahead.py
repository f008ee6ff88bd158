"""Reading a listing one page ahead: the next page is fetched while this one is stored,
errors arrive in their turn, and a caller that stops early leaves no thread behind."""

from __future__ import annotations

import itertools
import threading

import pytest

from partner_portal.incidents.read_ahead import read_ahead
from partner_portal.microsoft import errors
from tests.waiting import wait_until


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sync-read-ahead"]


def test_the_next_item_is_fetched_while_this_one_is_worked_on():
    fetched: list[tuple[int, str]] = []

    def items():
        for n in range(3):
            fetched.append((n, threading.current_thread().name))
            yield n

    got = []
    for n in read_ahead(items()):
        if n == 1:  # item 2 is fetched while we still hold item 1
            wait_until(lambda: len(fetched) == 3, timeout=10, what="item 2 fetched ahead")
        got.append(n)
    assert got == [0, 1, 2]
    # The first inline (a one-page listing starts no thread), the rest in the reader.
    assert fetched[0][1] == threading.current_thread().name
    assert {name for _, name in fetched[1:]} == {"sync-read-ahead"}


def test_an_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise errors.Transient("HTTP 503")

    got = []
    with pytest.raises(errors.Transient, match="503"):
        for n in read_ahead(items()):
            got.append(n)
    assert got == [1, 2]


def test_a_caller_that_stops_early_leaves_no_thread_behind():
    pages = read_ahead(itertools.count())
    assert [next(pages) for _ in range(3)] == [0, 1, 2]
    assert reader_threads()
    pages.close()  # the run stopped: lease lost, time limit
    wait_until(lambda: not reader_threads(), timeout=10, what="the reader to end")


@pytest.mark.django_db
def test_inside_a_transaction_it_reads_in_the_callers_thread():
    names = []

    def items():
        for n in range(3):
            names.append(threading.current_thread().name)
            yield n

    assert list(read_ahead(items())) == [0, 1, 2]
    assert set(names) == {threading.current_thread().name}
