"""pytest plugin: the test database is emptied with DELETE, not TRUNCATE, between tests that
commit (transactional_db, live_server, real workers).

Django's TransactionTestCase empties every table after such a test with one
`TRUNCATE t1, t2, …` (then post_migrate puts content types and permissions back). On
PostgreSQL a TRUNCATE gives each of the ~60 tables, its indexes and TOAST table new files
and syncs them at commit: 0.3 s on an idle machine, 2–3 s on a busy one, for tables that
hold a few rows. DELETE of those rows takes milliseconds and leaves the same empty tables
(sequences go on counting in both cases; no table has triggers). Flushes that ask for more
(reset_sequences, allow_cascade) keep Django's TRUNCATE.
"""

from __future__ import annotations

from django.db.backends.postgresql.operations import DatabaseOperations

_truncate = DatabaseOperations.sql_flush


def _sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    if reset_sequences or allow_cascade:
        return _truncate(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at the commit that
    # ends the flush, when every table is empty, so the order of the tables does not matter.
    return ["SET CONSTRAINTS ALL DEFERRED;"] + [
        f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(table))};"
        for table in tables
    ]


DatabaseOperations.sql_flush = _sql_flush  # type: ignore[method-assign]
