"""A page of rows upserted in one statement, the rows passed as one JSON document.

Why not `bulk_create(update_conflicts=True)`: on PostgreSQL, Django 5.2 sends each column as
an array (`UNNEST`), and psycopg's client-side binding quotes every element of those arrays
with a regular expression per character to escape — with the raw JSON of incidents and
alerts, that was ~40% of storing a page. One JSON text per page (`json_text.dumps`) is
quoted once; the database takes the rows apart (`jsonb_to_recordset` on PostgreSQL,
`json_each` on SQLite), so the SQL is the same on both but for where the rows come from.

The SQL is built from model metadata only (table and column names): every value travels
in the one parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connection, models

from partner_portal import json_text, raw_sql

if TYPE_CHECKING:
    Field = models.Field[Any, Any]


def upsert(
    model: type[models.Model],
    objs: Sequence[models.Model | Mapping[str, Any]],
    *,
    unique: Sequence[str],
    update: Sequence[str],
    returning: Sequence[str] = (),
    unless_same: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT `objs` … ON CONFLICT (`unique`) DO UPDATE SET `update` (DO NOTHING without
    `update`); the `returning` columns of the rows inserted or updated (a row left as it was
    is not returned). Field names, as `bulk_create` takes them. `objs`: model instances, or
    mappings of every field's attname to its value (cheaper to make). `unless_same`: a row
    whose stored values of these fields equal the new ones is left as it is (and so is not
    returned); put first the field most likely to differ."""
    if not objs:
        return []
    fields, sql = _statement(
        model, tuple(unique), tuple(update), tuple(returning), connection.vendor, tuple(unless_same)
    )
    with raw_sql.cursor() as cursor:
        cursor.execute(sql, [_document(fields, objs)])
        return list(cursor.fetchall()) if returning else []


@functools.lru_cache(maxsize=64)
def _statement(
    model: type[models.Model],
    unique: tuple[str, ...],
    update: tuple[str, ...],
    returning: tuple[str, ...],
    vendor: str = "",
    unless_same: tuple[str, ...] = (),
) -> tuple[list[Field], str]:
    """The fields and SQL text of an upsert: the same for every page, so made once (it cost
    more than a page's JSON). `vendor` keys the cache (the SQL differs by database)."""
    # Every column but a generated key (a one-to-one key is the row's own).
    fields = [f for f in model._meta.concrete_fields if f is not model._meta.auto_field]
    table, columns = raw_sql.table(model), ", ".join(_column(f) for f in fields)
    changed = [raw_sql.column(model, name) for name in update]
    # Names from the model only; the values are the parameter. SQLite's parser needs the
    # WHERE before an upsert's ON CONFLICT.
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM ({_source(fields)}) AS page "  # noqa: S608
        f"WHERE true "
        f"ON CONFLICT ({', '.join(raw_sql.column(model, name) for name in unique)}) "
    )
    if not changed:
        sql += "DO NOTHING"
    else:
        sql += f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in changed)}"
        if unless_same:
            # A row rewritten with its own values still costs a new row version, and in a
            # full page (no HOT update) an entry in every index: a reconciliation pass
            # (a full listing, daily) re-reads incidents that mostly did not change.
            same = "IS NOT DISTINCT FROM" if vendor == "postgresql" else "IS"
            kept = [f"{table}.{raw_sql.column(model, n)}" for n in unless_same]
            new = [f"excluded.{raw_sql.column(model, n)}" for n in unless_same]
            sql += (
                " WHERE NOT ("
                + " AND ".join(f"{k} {same} {n}" for k, n in zip(kept, new, strict=True))
                + ")"
            )
    if returning:
        sql += " RETURNING " + ", ".join(raw_sql.column(model, name) for name in returning)
    return fields, sql


def _source(fields: Sequence[Field]) -> str:
    """A SELECT of the rows in the JSON document parameter, one column per field."""
    if connection.vendor == "postgresql":
        # Types without a length: a cast to varchar(n) would cut; the column itself refuses.
        types = [f"{_column(f)} {str(f.db_type(connection)).split('(')[0]}" for f in fields]
        return f"SELECT * FROM jsonb_to_recordset(%s::jsonb) AS page({', '.join(types)})"  # noqa: S608
    # SQLite: ->> gives an SQL value, -> the JSON text of a JSON column.
    picks = [
        f"value {'->' if isinstance(f, models.JSONField) else '->>'} '$.{f.column}' AS {_column(f)}"
        for f in fields
    ]
    return f"SELECT {', '.join(picks)} FROM json_each(%s)"  # noqa: S608


def _document(fields: Sequence[Field], objs: Sequence[models.Model | Mapping[str, Any]]) -> str:
    """The rows as one JSON array of objects keyed by column; JSON fields nested as they are.
    Values as `bulk_create` takes them: after `pre_save` where a field has one that matters
    (`auto_now_add`…, model instances only), times in the database's text form."""
    sqlite = connection.vendor == "sqlite"
    adapt = connection.ops.adapt_datetimefield_value
    columns = [
        (
            f.column,
            f.attname,
            isinstance(f, models.DateTimeField),
            f if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else None,
        )
        for f in fields
    ]
    rows = []
    for obj in objs:
        instance = obj if isinstance(obj, models.Model) else None
        values: Mapping[str, Any] = obj.__dict__ if instance is not None else obj  # type: ignore[assignment]
        row = {}
        for column, attname, is_time, pre_save in columns:
            if pre_save is not None and instance is not None:
                value = pre_save.pre_save(instance, add=True)
            else:
                value = values[attname]
            if is_time and value is not None:
                # SQLite keeps Django's own text form (naive UTC): comparisons and order hold.
                value = str(adapt(value)) if sqlite else value.isoformat()
            row[column] = value
        rows.append(row)
    return json_text.dumps(rows).decode("utf-8", "surrogatepass")


def _column(field: Field) -> str:
    return connection.ops.quote_name(field.column)
