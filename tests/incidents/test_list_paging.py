"""Keyset pagination: every row exactly once, in order, on any page; constant queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from partner_portal.incidents.dashboard import PAGE_SIZE, encode_cursor, parse_sort
from tests.factories import IncidentFactory

LIST = reverse("incidents:list")


@pytest.fixture
def many(tenant_a, tenant_b):
    """130 Contoso incidents in groups of ten that share one timestamp (ties on every
    page boundary), plus Fabrikam's, interleaved."""
    now = timezone.now().replace(microsecond=0)
    made = []
    for i in range(130):
        made.append(
            IncidentFactory(
                tenant=tenant_a,
                name=f"Contoso {i:03d}",
                search_text=f"contoso {i:03d}",
                severity_rank=i % 5,
                last_update_time=now - timedelta(minutes=i // 10),
                created_time=now - timedelta(days=1, minutes=i // 7),
            )
        )
        if i % 3 == 0:
            IncidentFactory(tenant=tenant_b, last_update_time=now - timedelta(minutes=i // 10))
    return made


def expected_order(incidents, sort: str) -> list[int]:
    keys = {
        "updated": lambda x: (x.last_update_time, x.pk),
        "created": lambda x: (x.created_time, x.pk),
        "severity": lambda x: (x.severity_rank, x.last_update_time, x.pk),
    }[sort.lstrip("-")]
    return [x.pk for x in sorted(incidents, key=keys, reverse=sort.startswith("-"))]


def page_ids(response) -> list[int]:
    return [incident.pk for incident in response.context["page"].incidents]


def walk(client, first_url: str, direction: str) -> list[list[int]]:
    pages = []
    url = first_url
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(page_ids(response))
        url = response.context[f"{direction}_url"]
        assert len(pages) < 10, "paging does not end"
    return pages


@pytest.mark.parametrize("sort", ["-updated", "updated", "-created", "created", "-severity"])
def test_next_pages_list_every_row_once_in_order_despite_equal_timestamps(alice_client, many, sort):
    pages = walk(alice_client, f"{LIST}?sort={sort}", "next")
    assert [len(p) for p in pages] == [50, 50, 30]
    assert [pk for page in pages for pk in page] == expected_order(many, sort)


def test_previous_pages_from_the_last_page_list_every_row_once(alice_client, many):
    pages = walk(alice_client, f"{LIST}?last=1", "previous")
    # The last page holds what is left after full pages (130 = 50 + 50 + 30), so that
    # stepping back lands on the same pages as stepping forward, and the first is full.
    assert [len(p) for p in pages] == [30, 50, 50]
    flattened = [pk for page in reversed(pages) for pk in page]
    assert flattened == expected_order(many, "-updated")


def test_first_middle_and_last_page_hold_the_expected_rows(alice_client, many):
    order = expected_order(many, "-updated")
    first = alice_client.get(LIST)
    assert page_ids(first) == order[:PAGE_SIZE]
    assert first.context["previous_url"] is None
    middle = alice_client.get(first.context["next_url"])
    assert page_ids(middle) == order[PAGE_SIZE : 2 * PAGE_SIZE]
    assert middle.context["previous_url"] and middle.context["next_url"]
    last = alice_client.get(middle.context["last_url"])
    # What is left after full pages: 130 rows are pages of 50, 50 and 30.
    assert page_ids(last) == order[2 * PAGE_SIZE :]
    assert last.context["next_url"] is None
    back = alice_client.get(middle.context["previous_url"])
    assert page_ids(back) == order[:PAGE_SIZE]


def test_filters_survive_paging(alice_client, many):
    response = alice_client.get(LIST, {"q": "contoso 0", "sort": "updated"})
    assert "q=contoso+0" in response.context["next_url"]
    assert "sort=updated" in response.context["next_url"]
    pages = walk(alice_client, response.context["next_url"], "next")
    expected = expected_order(many[:100], "updated")
    assert [pk for page in pages for pk in page] == expected[PAGE_SIZE:]


def test_a_malformed_cursor_shows_the_first_page(alice_client, many):
    response = alice_client.get(LIST, {"after": "not-a-cursor"})
    assert page_ids(response) == expected_order(many, "-updated")[:PAGE_SIZE]
    response = alice_client.get(LIST, {"after": "2026-01-01T00:00:00_1"})  # naive time
    assert page_ids(response) == expected_order(many, "-updated")[:PAGE_SIZE]
    response = alice_client.get(LIST, {"before": "garbage"})
    assert page_ids(response) == expected_order(many, "-updated")[:PAGE_SIZE]


def test_the_count_is_capped(alice_client, many, monkeypatch):
    response = alice_client.get(LIST)
    assert (response.context["count"], response.context["count_more"]) == (130, False)
    monkeypatch.setattr("partner_portal.incidents.dashboard.COUNT_CAP", 100)
    response = alice_client.get(LIST)
    assert (response.context["count"], response.context["count_more"]) == (100, True)
    assert b"1\xe2\x80\x9350 of more than 100 incidents" in response.content


def test_queries_per_page_stay_the_same_on_a_deep_page(
    alice_client, many, django_assert_max_num_queries, django_assert_num_queries
):
    last = alice_client.get(f"{LIST}?last=1")
    deep_url = last.context["previous_url"]
    # Session (read; saved in a savepoint: 3), user, page, her saved views, one query for
    # the count, the position and every view's count, tenant options, the failing-channels
    # banner, her permissions (her own and her groups', in one).
    with django_assert_max_num_queries(11) as first:
        alice_client.get(LIST, {"sort": "-updated"})
    with django_assert_max_num_queries(11) as deep:
        alice_client.get(deep_url)
    assert len(first.captured_queries) == len(deep.captured_queries)
    with django_assert_num_queries(len(first.captured_queries)):
        alice_client.get(f"{LIST}?last=1")


def test_a_cursor_before_the_first_row_starts_over_at_the_first_page(alice_client, many):
    first = alice_client.get(LIST)
    top = first.context["page"].incidents[0]
    response = alice_client.get(LIST, {"before": encode_cursor(top, parse_sort("-updated")[0])})
    assert page_ids(response) == page_ids(first)
    assert response.context["previous_url"] is None
