"""Django's database sessions, read and renewed in plain SQL (SESSION_ENGINE).

Every request reads its session, and SESSION_SAVE_EVERY_REQUEST writes it back (the sliding
expiry). Django's store does both through the ORM: building the SELECT and the UPDATE cost
~1.8 M instructions a request, five times the statements' own cost, a tenth of an incident
list fragment. Same table, same rows, same signed data: only these two statements differ;
creating, deleting and the async methods are Django's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import UpdateError
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self) -> dict[str, Any]:
        # What Django's load() reads: the unexpired row of this key, else no session.
        connection = connections[router.db_for_read(self.model)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT session_data FROM {table} "  # noqa: S608 (the model's table)
                "WHERE session_key = %s AND expire_date > %s",
                [self.session_key, now],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return {}
        return self.decode(row[0])

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None or must_create:
            super().save(must_create=must_create)  # a new session: Django's INSERT
            return
        # Django's save() of an existing key: its row, rewritten (UpdateError if it is gone).
        data = self.encode(self._get_session())  # type: ignore[attr-defined]
        connection = connections[router.db_for_write(self.model)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        expiry = connection.ops.adapt_datetimefield_value(self.get_expiry_date())
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET session_data = %s, expire_date = %s "  # noqa: S608
                "WHERE session_key = %s",
                [data, expiry, self.session_key],
            )
            if cursor.rowcount != 1:
                raise UpdateError
