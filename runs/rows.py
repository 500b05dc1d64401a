"""The state machine's own writes, as plain parameterised SQL: one UPDATE and one INSERT shape.

A step's life is three transitions (queued, running, an end), each a compare-and-set UPDATE and
an audit INSERT. Built by the ORM each time, they cost 0.25 and 0.15 ms of Python apiece on the
2-core bench machine, against 0.03 ms as SQL written once per shape (`make bench`), and the
workers' bookkeeping competes with the steps for those cores. Values still pass through each
field's get_db_prep_save, so SQLite and PostgreSQL receive exactly what the ORM would send.
Only runs/transitions.py writes through here (and the orchestrator takes a run's lock).
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection, models


def update(model: type[models.Model], where: dict[str, Any], changes: dict[str, Any]) -> int:
    """UPDATE model SET changes WHERE every `where` field equals its value; returns the rows changed."""
    sql, set_fields, where_fields = _update_sql(model, tuple(changes), tuple(where))
    params = [f.get_db_prep_save(_value(v), connection) for f, v in zip(set_fields, changes.values(), strict=True)]
    params += [f.get_db_prep_value(v, connection) for f, v in zip(where_fields, where.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert(model: type[models.Model], values: dict[str, Any]) -> None:
    """INSERT one row (its id is not read back: nobody needs an audit row's)."""
    sql, fields = _insert_sql(model, tuple(values))
    params = [f.get_db_prep_save(_value(v), connection) for f, v in zip(fields, values.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _value(value: Any) -> Any:
    # A related object given for a foreign key (reused_from=origin) is written as its id.
    return value.pk if isinstance(value, models.Model) else value


def lock(model: type[models.Model], pk: int) -> None:
    """Take the row's lock for the transaction (SELECT ... FOR UPDATE; SQLite's BEGIN IMMEDIATE
    already holds the database's)."""
    if connection.features.has_select_for_update:
        with connection.cursor() as cursor:
            cursor.execute(_lock_sql(model), [pk])


@functools.cache
def _lock_sql(model: type[models.Model]) -> str:
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    return f"SELECT {pk} FROM {table} WHERE {pk} = %s {connection.ops.for_update_sql()}"


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...], where: tuple[str, ...]) -> tuple[str, list, list]:
    set_fields = [model._meta.get_field(name) for name in names]
    where_fields = [model._meta.get_field(name) for name in where]
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = %s" for f in set_fields)
    conditions = " AND ".join(f"{quote(f.column)} = %s" for f in where_fields)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE {conditions}", set_fields, where_fields


@functools.cache
def _insert_sql(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, list]:
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})", fields
