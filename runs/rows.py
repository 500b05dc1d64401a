"""The hot path's SQL, written once per shape: the state machine's writes and a step's reads.

A step's life is three transitions (queued, running, an end), each a compare-and-set UPDATE and
an audit INSERT, and each end advances its run, which reads the run, its steps' states and the
rows and outputs of the steps it starts. Built by the ORM each time, each statement costs 0.15 to
0.5 ms of Python on the 2-core bench machine, against 0.03 ms as SQL written once per shape
(`make bench`), and the workers' bookkeeping competes with the steps for those cores. Values
pass through each field's get_db_prep_save and rows read back through the field's and the
backend's converters, so SQLite and PostgreSQL see exactly what the ORM would send and return.
The state machine (runs/transitions.py) and a step's end (its outputs' rows) write through here;
the orchestrator, the executor and a worker's drain check read through it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


def _cursor():
    """A cursor for these statements. On PostgreSQL with prepared statements on (the database's
    `prepare_threshold`, settings.py), one that binds parameters on the server, which plans each
    statement once per connection instead of parsing and planning it on every execute; the ORM's
    cursors bind on the client, where nothing is ever prepared."""
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def update(model: type[models.Model], where: dict[str, Any], changes: dict[str, Any]) -> int:
    """UPDATE model SET changes WHERE every `where` field equals its value; returns the rows changed."""
    sql, set_fields, where_fields = _update_sql(model, tuple(changes), tuple(where))
    params = [f.get_db_prep_save(_value(v), connection) for f, v in zip(set_fields, changes.values(), strict=True)]
    params += [f.get_db_prep_value(v, connection) for f, v in zip(where_fields, where.values(), strict=True)]
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert(model: type[models.Model], *rows: dict[str, Any]) -> None:
    """INSERT rows with the same fields, in one statement (their ids are not read back: nobody
    needs an audit row's)."""
    sql, fields = _insert_sql(model, tuple(rows[0]), len(rows))
    params = [
        f.get_db_prep_save(_value(v), connection) for row in rows for f, v in zip(fields, row.values(), strict=True)
    ]
    with _cursor() as cursor:
        cursor.execute(sql, params)


def select(
    model: type[M], where: dict[str, Any], *, fields: Iterable[str] | None = None, for_update: bool = False
) -> list[M]:
    """The rows where each `where` field equals its value (or is one of a list's, tuple's or set's),
    as instances with only `fields` loaded (all concrete fields by default; others load when read)."""
    names = tuple(fields) if fields is not None else tuple(f.attname for f in model._meta.concrete_fields)
    lock = for_update and connection.features.has_select_for_update
    columns, found = _fetch(model, names, where, lock)
    attnames = [column.target.attname for column in columns]
    return [model.from_db(connection.alias, attnames, row) for row in found]


def values(model: type[models.Model], fields: Iterable[str], where: dict[str, Any]) -> list[tuple]:
    """Like `select`, as tuples of the `fields`' values."""
    return _fetch(model, tuple(fields), where, False)[1]


def _fetch(model, names: tuple[str, ...], where: dict[str, Any], lock: bool) -> tuple[list, list[tuple]]:
    shape = tuple((name, len(v) if isinstance(v, _MANY) else None) for name, v in where.items())
    if any(count == 0 for _, count in shape):
        return [], []  # an empty IN matches nothing
    sql, columns, where_fields = _select_sql(model, names, shape, lock)
    params: list[Any] = []
    for field, value in zip(where_fields, where.values(), strict=True):
        params += [field.get_db_prep_value(v, connection) for v in (value if isinstance(value, _MANY) else [value])]
    with _cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return columns, [tuple(_converted(c, v) for c, v in zip(columns, row, strict=True)) for row in found]


_MANY = (list, tuple, set, frozenset)


def _converted(col, value: Any) -> Any:
    for convert in col.converters:
        value = convert(value, col, connection)
    return value


def _value(value: Any) -> Any:
    # A related object given for a foreign key (reused_from=origin) is written as its id.
    return value.pk if isinstance(value, models.Model) else value


def select_with_parent(
    model: type[M], pk: int, relation: str, parent_fields: tuple[str, ...], *, for_update: bool = False
) -> M | None:
    """The row `pk` of `model`, all its concrete fields, with `parent_fields` of the row its foreign
    key `relation` refers to set on it as that relation: one statement (a join), not two. With
    `for_update`, only `model`'s row is locked."""
    parent = model._meta.get_field(relation).related_model
    names = tuple(f.attname for f in model._meta.concrete_fields)
    lock = for_update and connection.features.has_select_for_update
    sql, columns, parent_columns = _join_sql(model, names, relation, parent_fields, lock)
    with _cursor() as cursor:
        cursor.execute(sql, [model._meta.pk.get_db_prep_value(pk, connection)])
        found = cursor.fetchone()
    if found is None:
        return None
    values = [_converted(c, v) for c, v in zip([*columns, *parent_columns], found, strict=True)]
    row = model.from_db(connection.alias, list(names), values[: len(columns)])
    setattr(row, relation, parent.from_db(connection.alias, list(parent_fields), values[len(columns) :]))
    return row


@functools.cache
def _join_sql(model, names: tuple[str, ...], relation: str, parent_fields: tuple[str, ...], lock: bool):
    quote = connection.ops.quote_name
    fk = model._meta.get_field(relation)
    parent = fk.related_model
    table, parent_table = quote(model._meta.db_table), quote(parent._meta.db_table)
    columns, parent_columns = _columns(model, names), _columns(parent, parent_fields)
    selected = [f"{table}.{quote(c.target.column)}" for c in columns]
    selected += [f"{parent_table}.{quote(c.target.column)}" for c in parent_columns]
    sql = (
        f"SELECT {', '.join(selected)} FROM {table} JOIN {parent_table}"
        f" ON {table}.{quote(fk.column)} = {parent_table}.{quote(parent._meta.pk.column)}"
        f" WHERE {table}.{quote(model._meta.pk.column)} = %s"
    )
    if lock:
        of = (table,) if connection.features.has_select_for_update_of else ()
        sql += f" {connection.ops.for_update_sql(of=of)}"
    return sql, columns, parent_columns


def _columns(model, names: tuple[str, ...]) -> list:
    table = model._meta.db_table
    columns = []
    for name in names:
        col = model._meta.get_field(name).get_col(table)
        # The backend's converters, then the field's (JSON decoded, SQLite's text dates parsed...),
        # in the order the ORM's compiler applies them.
        col.converters = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
        columns.append(col)
    return columns


@functools.cache
def _select_sql(model, names: tuple[str, ...], shape: tuple, lock: bool) -> tuple[str, list, list]:
    table = model._meta.db_table
    columns = _columns(model, names)
    where_fields = [model._meta.get_field(name) for name, _ in shape]
    quote = connection.ops.quote_name
    conditions = " AND ".join(
        f"{quote(f.column)} = %s" if count is None else f"{quote(f.column)} IN ({', '.join(['%s'] * count)})"
        for f, (_, count) in zip(where_fields, shape, strict=True)
    )
    sql = f"SELECT {', '.join(quote(c.target.column) for c in columns)} FROM {quote(table)} WHERE {conditions}"
    if lock:
        sql += f" {connection.ops.for_update_sql()}"
    return sql, columns, where_fields


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...], where: tuple[str, ...]) -> tuple[str, list, list]:
    set_fields = [model._meta.get_field(name) for name in names]
    where_fields = [model._meta.get_field(name) for name in where]
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = %s" for f in set_fields)
    conditions = " AND ".join(f"{quote(f.column)} = %s" for f in where_fields)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE {conditions}", set_fields, where_fields


@functools.cache
def _insert_sql(model: type[models.Model], names: tuple[str, ...], count: int) -> tuple[str, list]:
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * count)}", fields


def run_outputs(run_id: int, jobs: Iterable[str]) -> list[tuple[str, str, int, str, str]]:
    """(job, output, artifact id, sha256, kind) of the outputs of the run's steps named `jobs`."""
    jobs = list(jobs)
    if not jobs:
        return []
    with _cursor() as cursor:
        cursor.execute(_run_outputs_sql(len(jobs)), [run_id, *jobs])
        return cursor.fetchall()


@functools.cache
def _run_outputs_sql(count: int) -> str:
    from runs.models import Artifact, StepOutput, StepRun

    quote = connection.ops.quote_name
    out, step, art = (quote(m._meta.db_table) for m in (StepOutput, StepRun, Artifact))
    return (
        f"SELECT {step}.{quote('name')}, {out}.{quote('name')}, {art}.{quote('id')}, {art}.{quote('sha256')},"
        f" {art}.{quote('kind')} FROM {out}"
        f" JOIN {step} ON {out}.{quote('step_run_id')} = {step}.{quote('id')}"
        f" JOIN {art} ON {out}.{quote('artifact_id')} = {art}.{quote('id')}"
        f" WHERE {step}.{quote('run_id')} = %s AND {step}.{quote('name')} IN ({', '.join(['%s'] * count)})"
    )
