"""Raw SQL for the few statements every sync run makes, where building the query through
the ORM cost more than running it (incidents/sync.py's history read, with two subqueries
and an EXISTS, was a tenth of a one-page run's CPU). The text is built once from the models'
metadata; values come back converted as the ORM converts them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model


def cursor() -> CursorWrapper:
    """Django's cursor; on PostgreSQL binding parameters on the server (Django binds them on
    the client by default), so that a statement run again and again on a connection is
    prepared once (settings.py's `prepare_threshold`): PostgreSQL then parses and plans
    each of a sync run's statements once per connection, not once per run (half of their
    server CPU). A page's JSON also travels as it is instead of being escaped into the
    statement's text. For statements whose text is the same on every call; values must
    be of a type PostgreSQL can infer from the statement (no bare `%s` in a SELECT list)."""
    if connection.vendor != "postgresql" or getattr(
        connection.features, "uses_server_side_binding", False
    ):
        return connection.cursor()
    # Only defined with psycopg 3 (requirements.txt); imported here, not on SQLite.
    from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
        ServerBindingCursor,
    )

    # What connection.cursor() does (connect, wrap for the debug cursor and the tests' query
    # counts), with this cursor instead of a client-binding one made only to be closed.
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(ServerBindingCursor(connection.connection))  # type: ignore[attr-defined]


def one_of(values: Sequence[Any], array_type: str) -> tuple[str, list[Any]]:
    """The right side of "column is one of these values" and its parameters: on PostgreSQL
    `= ANY(%s::array_type[])` with the values as one array, so that the statement's text
    is the same for any number of them (prepared once: `cursor`); elsewhere `IN (%s, …)`."""
    if connection.vendor == "postgresql":
        return f"= ANY(%s::{array_type}[])", [list(values)]
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def field(model: type[Model], name: str) -> Field:
    found = model._meta.get_field(name)
    assert isinstance(found, Field)  # noqa: S101 (a programming error, not input)
    return found


def column(model: type[Model], name: str, alias: str = "") -> str:
    quoted = connection.ops.quote_name(field(model, name).column)
    return f"{alias}.{quoted}" if alias else quoted


def from_db(fields: Sequence[Field], row: Sequence[Any]) -> list[Any]:
    """A row's values as the ORM would give them for these fields (JSON parsed, SQLite's
    datetimes read, …)."""
    values = []
    for field, value in zip(fields, row, strict=True):
        for convert in _converters(field):
            value = convert(value, field.cached_col, connection)
        values.append(value)
    return values


@functools.cache
def _converters(field: Field) -> list[Any]:
    col = field.cached_col
    return [*connection.ops.get_db_converters(col), *field.get_db_converters(connection)]  # type: ignore[attr-defined]


def update(
    model: type[Model],
    where: dict[str, Any],
    values: dict[str, Any],
    *,
    at_least: dict[str, Any] | None = None,
    lapsed: dict[str, Any] | None = None,
) -> int:
    """`model.objects.filter(**where).update(**values)` for plain equality conditions, with
    the statement's text built once: the rows updated. `at_least`: columns raised to these
    values, never lowered (a NULL is lowest). `lapsed`: conditions too, that these columns
    are NULL or before these values."""
    return execute(update_statement(model, where, values, at_least=at_least, lapsed=lapsed))


Statement = tuple[str, list[Any]]


def update_statement(
    model: type[Model],
    where: dict[str, Any],
    values: dict[str, Any],
    *,
    at_least: dict[str, Any] | None = None,
    lapsed: dict[str, Any] | None = None,
) -> Statement:
    """The statement `update` would run, with its parameters, to run with more."""
    return _update(model, where, values, at_least or {}, lapsed or {})


def execute(statement: Statement) -> int:
    """Run a statement; the rows it changed."""
    with cursor() as rows:
        rows.execute(*statement)
        return rows.rowcount


def execute_returning(
    statement: Statement, returning: tuple[str, Sequence[Any]]
) -> tuple[Any, ...] | None:
    """Run an UPDATE of (at most) one row, reading back the values of `returning` (SQL
    expressions and their parameters; the row's columns by name, other tables in
    subqueries) as the row is after it: None when no row matched."""
    (sql, params), (expressions, extra) = statement, returning
    with cursor() as rows:
        rows.execute(f"{sql} RETURNING {expressions}", [*params, *extra])
        return rows.fetchone()


def update_after(
    first: Statement | None,
    model: type[Model],
    where: dict[str, Any],
    values: dict[str, Any],
    returning: tuple[str, Sequence[Any]],
    *,
    at_least: dict[str, Any] | None = None,
) -> tuple[bool, tuple[Any, ...] | None]:
    """`first` (a conditional UPDATE, `update_statement`), then this update, reading back
    `returning` (`execute_returning`), only if `first` changed a row: whether it did, and
    the row read back (None when it did not, or when this update matched no row). On
    PostgreSQL one statement (a data-modifying WITH), one round trip where two would be;
    elsewhere two. Without `first`, just this update."""
    if first is None or connection.vendor != "postgresql":
        if first is not None and not execute(first):
            return False, None
        statement = update_statement(model, where, values, at_least=at_least)
        return True, execute_returning(statement, returning)
    (first_sql, first_params), (expressions, extra) = first, returning
    sql, params = _update(model, where, values, at_least or {}, {})
    combined = (  # texts built from the models' names, values as parameters
        f"WITH first AS ({first_sql} RETURNING 1), "  # noqa: S608
        f"second AS ({sql} AND EXISTS (SELECT 1 FROM first) RETURNING 1, {expressions}) "
        "SELECT EXISTS (SELECT 1 FROM first), second.* FROM (SELECT 1) AS one "
        "LEFT JOIN second ON true"
    )
    with cursor() as rows:
        rows.execute(combined, [*first_params, *params, *extra])
        done, matched, *row = rows.fetchone()
    return bool(done), tuple(row) if matched else None


def _update(
    model: type[Model],
    where: dict[str, Any],
    values: dict[str, Any],
    at_least: dict[str, Any],
    lapsed: dict[str, Any],
) -> tuple[str, list[Any]]:
    sql = _update_sql(model, tuple(values), tuple(at_least), tuple(where), tuple(lapsed))
    params = [field(model, name).get_db_prep_save(v, connection) for name, v in values.items()]
    for name, v in at_least.items():
        params += [field(model, name).get_db_prep_save(v, connection)] * 2
    for name, v in [*where.items(), *lapsed.items()]:
        params.append(field(model, name).get_db_prep_value(v, connection))
    return sql, params


@functools.cache
def _update_sql(
    model: type[Model],
    names: tuple[str, ...],
    raised: tuple[str, ...],
    where: tuple[str, ...],
    lapsed: tuple[str, ...],
) -> str:
    sets = [f"{column(model, name)} = %s" for name in names]
    for name in raised:
        col = column(model, name)
        sets.append(f"{col} = CASE WHEN {col} IS NULL OR {col} < %s THEN %s ELSE {col} END")
    conditions = " AND ".join(
        [f"{column(model, name)} = %s" for name in where]
        + [f"({column(model, n)} IS NULL OR {column(model, n)} < %s)" for n in lapsed]
    )
    return f"UPDATE {table(model)} SET {', '.join(sets)} WHERE {conditions}"  # noqa: S608
