"""Metric reads that stay small however much a step logs: per-name summaries as SQL aggregates,
and series thinned in SQL to a fixed number of points.

A training loop may log a million points for one name, or thousands of names: nothing here
brings more rows into Python than the pages draw. Only portable ORM constructs (aggregates,
window functions with a filter on them): the tests run on SQLite, CI and production on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, Max, Min, Q, QuerySet, Window
from django.db.models.functions import Mod, RowNumber


@dataclass(frozen=True)
class NameSummary:
    name: str
    count: int
    minimum: float
    maximum: float
    last: float


def name_count(rows: QuerySet) -> int:
    return rows.values("name").distinct().count()


def summaries(rows: QuerySet, *, limit: int) -> list[NameSummary]:
    """The first `limit` names of `rows` by name, each with its count, min, max and last value
    (the one with the highest id): two queries, whatever the number of rows."""
    grouped = list(
        rows.order_by()
        .values("name")
        .annotate(count=Count("id"), minimum=Min("value"), maximum=Max("value"), last_id=Max("id"))
        .order_by("name")[:limit]
    )
    last = dict(rows.model.objects.filter(id__in=[g["last_id"] for g in grouped]).values_list("id", "value"))
    return [NameSummary(g["name"], g["count"], g["minimum"], g["maximum"], last[g["last_id"]]) for g in grouped]


def thinned(rows: QuerySet, *, partition: list[str], order: str, cap: int) -> QuerySet:
    """`rows` cut to at most `cap` rows per partition, evenly spaced in `order`, the first and last
    always among them.

    Row r (numbered from 0) of a partition of n rows is kept where r is a multiple of the stride
    s = ceil((n - 1) / (cap - 1)), or where it is the last: at most cap - 1 multiples below n - 1,
    plus the last. The stride is written floor((n - 2) / (cap - 1)) + 1, equal for n >= 2, and 1
    for n = 1 as both databases truncate -1 / (cap - 1) to 0; so no division by zero."""
    if cap < 2:
        raise ValueError("a thinned series keeps its first and last points: cap must be 2 or more")
    by = [F(name) for name in partition]
    return (
        rows.order_by()
        .annotate(
            row=Window(RowNumber(), partition_by=by, order_by=F(order).asc()) - 1,
            rows_in=Window(Count("id"), partition_by=by),
        )
        .annotate(
            phase=Mod(F("row"), (F("rows_in") - 2) / (cap - 1) + 1, output_field=IntegerField()),
            from_end=F("rows_in") - 1 - F("row"),
        )
        .filter(Q(phase=0) | Q(from_end=0))
    )
