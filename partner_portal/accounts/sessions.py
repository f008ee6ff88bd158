"""Django's database sessions, read and renewed in plain SQL (SESSION_ENGINE).

Every request reads its session, and SESSION_SAVE_EVERY_REQUEST writes it back (the sliding
expiry). Django's store does both through the ORM: building the SELECT and the UPDATE cost
~1.8 M instructions a request, five times the statements' own cost, a tenth of an incident
list fragment. Same table, same rows, same signed data: only these two statements differ;
creating, deleting and the async methods are Django's.

A session unchanged since it was read is written back at most once a minute (RENEW_SECONDS):
the sliding expiry moves in steps of a minute instead of with every request, and most of a
technician's clicks cost no write (a transaction, its WAL and a commit) nor signing.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import UpdateError
from django.db import connections, router
from django.utils import timezone

# An unchanged session whose expiry was renewed less than this long ago is not written.
RENEW_SECONDS = 60


class SessionStore(db.SessionStore):
    def load(self) -> dict[str, Any]:
        # What Django's load() reads: the unexpired row of this key, else no session.
        connection = connections[router.db_for_read(self.model)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        now = timezone.now()
        # Renewed within RENEW_SECONDS: its expiry is later than a renewal before then gave.
        recent = now + timedelta(seconds=settings.SESSION_COOKIE_AGE - RENEW_SECONDS)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT session_data, expire_date > %s FROM {table} "  # noqa: S608
                "WHERE session_key = %s AND expire_date > %s",
                [
                    connection.ops.adapt_datetimefield_value(recent),
                    self.session_key,
                    connection.ops.adapt_datetimefield_value(now),
                ],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return {}
        data = self.decode(row[0])
        # What was read, to tell an unchanged session in save(): `modified` misses changes
        # inside a stored dict or list, which SESSION_SAVE_EVERY_REQUEST saves all the same.
        self._as_read = (copy.deepcopy(data), bool(row[1]))
        return data

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            super().save(must_create=must_create)  # a new session: Django's INSERT
            return
        # Unchanged since read, and its expiry (SESSION_COOKIE_AGE: none of its own) renewed
        # less than a minute ago.
        as_read, renewed_recently = getattr(self, "_as_read", (None, False))
        data = self._get_session()  # type: ignore[attr-defined]
        if renewed_recently and data == as_read and "_session_expiry" not in data:
            return
        # Django's save() of an existing key: its row, rewritten (UpdateError if it is gone).
        encoded = self.encode(data)
        connection = connections[router.db_for_write(self.model)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        expiry = connection.ops.adapt_datetimefield_value(self.get_expiry_date())
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET session_data = %s, expire_date = %s "  # noqa: S608
                "WHERE session_key = %s",
                [encoded, expiry, self.session_key],
            )
            if cursor.rowcount != 1:
                raise UpdateError
