"""Saved views of the incident list: built-in ones and each staff member's own.

A view is the list's query string (filters and sort), so a view is shared by its URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.db import transaction
from django.http import QueryDict

from partner_portal.incidents.filters import OPEN, UNASSIGNED
from partner_portal.incidents.models import SavedView

# The list shows this many of a user's views (each costs a capped count).
MAX_SHOWN = 12
# Keys that pick a page, never part of a view.
PAGE_KEYS = ("after", "before", "last")


def built_in(user: Any) -> list[tuple[str, str]]:
    """(name, query string) of the views everyone has."""
    views = [
        (
            "Needs attention",
            urlencode(
                {"status": OPEN, "severity": "High", "assigned_to": UNASSIGNED, "sort": "-updated"}
            ),
        )
    ]
    # Microsoft assigns incidents to an e-mail address (a user principal name).
    if getattr(user, "email", ""):
        views.append(("Assigned to me", urlencode({"assigned_to": user.email})))
    views.append(("Changed in the last hour", urlencode({"updated": "1h"})))
    return views


def clean_query(query: str) -> str:
    """The query string without paging keys or empty values."""
    pairs = [
        (key, value)
        for key, values in QueryDict(query).lists()
        if key not in PAGE_KEYS
        for value in values
        if value != ""
    ]
    return urlencode(pairs)


def save(*, user: Any, name: str, query: str, default: bool) -> SavedView:
    """Create the view, or replace the query of the user's view of that name."""
    with transaction.atomic():
        view, _ = SavedView.objects.update_or_create(
            user=user, name=name, defaults={"query": clean_query(query)}
        )
        if default:
            make_default(user=user, view=view)
    return view


def make_default(*, user: Any, view: SavedView | None) -> None:
    """`view` becomes the user's one default (None: no default). The partial unique index
    allows one default per user: clear the old one first, in the same transaction."""
    with transaction.atomic():
        SavedView.objects.filter(user=user, is_default=True).update(is_default=False)
        if view is not None:
            SavedView.objects.filter(pk=view.pk, user=user).update(is_default=True)
