"""Sessions (accounts/sessions.py: Django's database sessions, read and renewed in plain
SQL): sliding expiry, expired and vanished sessions, data kept between requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from partner_portal.accounts.sessions import SessionStore
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_portal_uses_this_store():
    assert settings.SESSION_ENGINE == "partner_portal.accounts.sessions"


def test_each_request_renews_the_session(client):
    client.force_login(UserFactory())
    key = client.session.session_key
    Session.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(minutes=5))
    assert client.get(reverse("incidents:list")).status_code == 200
    expiry = Session.objects.get(pk=key).expire_date
    renewed = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert abs(expiry - renewed) < timedelta(minutes=1)


def test_an_expired_or_deleted_session_is_signed_out(client):
    # (An expired row is no session: the store reads only unexpired ones.)
    client.force_login(UserFactory())
    key = client.session.session_key
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("incidents:list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    client.force_login(UserFactory())
    Session.objects.filter(pk=client.session.session_key).delete()
    assert client.get(reverse("incidents:list")).status_code == 302


# Each store test runs against Django's database store too: the two behave alike.
STORES = pytest.mark.parametrize("SessionStore", [SessionStore, db.SessionStore])


@STORES
def test_data_saved_in_one_request_is_read_in_the_next(SessionStore):  # noqa: N803
    store = SessionStore()
    store["time_zone"] = "Europe/Vienna"
    store.save()  # a new session: created
    again = SessionStore(store.session_key)
    assert again["time_zone"] == "Europe/Vienna"
    again["time_zone"] = "Asia/Kolkata"
    again.save()  # an existing session: rewritten
    assert SessionStore(store.session_key)["time_zone"] == "Asia/Kolkata"
    assert Session.objects.count() == 1


@STORES
def test_an_unknown_key_starts_a_new_session_and_a_vanished_one_is_not_recreated(
    SessionStore,  # noqa: N803
):
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {}
    assert unknown.session_key is None
    unknown["a"] = 1
    unknown.save()
    assert unknown.session_key != "x" * 32
    assert Session.objects.filter(pk=unknown.session_key).exists()

    # Deleted while a request had it (signed out elsewhere): saving it is an error, which
    # Django's session middleware turns into SessionInterrupted, not a new session.
    store = SessionStore(unknown.session_key)
    assert store["a"] == 1
    Session.objects.all().delete()
    store["a"] = 2
    with pytest.raises(UpdateError):
        store.save()
    assert not Session.objects.exists()


def test_an_unchanged_session_is_written_at_most_once_a_minute(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(UserFactory())
    key = client.session.session_key
    url = reverse("incidents:list")
    client.get(url)  # renewed now
    expiry = Session.objects.get(pk=key).expire_date
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    assert not [q for q in queries if "django_session" in q["sql"] and "UPDATE" in q["sql"]]
    assert Session.objects.get(pk=key).expire_date == expiry
    # Renewed a minute ago or more: written again.
    earlier = expiry - timedelta(seconds=61)
    Session.objects.filter(pk=key).update(expire_date=earlier)
    client.get(url)
    assert Session.objects.get(pk=key).expire_date > expiry


def test_a_changed_session_is_written_even_when_renewed_just_now(client):
    client.force_login(UserFactory())
    key = client.session.session_key
    client.get(reverse("incidents:list"))
    # The time zone page keeps the choice in the session.
    response = client.post(reverse("incidents:preferences"), {"time_zone": "Asia/Kolkata"})
    assert response.status_code == 302
    assert SessionStore(key)["time_zone"] == "Asia/Kolkata"


def test_a_change_inside_a_stored_dict_is_written_although_not_marked_modified():
    store = SessionStore()
    store["flows"] = {"a": 1}
    store.save()  # created: its expiry renewed just now
    again = SessionStore(store.session_key)
    again["flows"]["a"] = 2  # Django's `modified` does not see this
    assert not again.modified
    again.save()
    assert SessionStore(store.session_key)["flows"] == {"a": 2}
