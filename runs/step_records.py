"""What a step logs through its metrics channel, once read and checked (runs/executor.py reads it)."""

from __future__ import annotations

from typing import NamedTuple


class MetricRecord(NamedTuple):
    name: str
    value: float
    step: int


class ParamRecord(NamedTuple):
    name: str
    value: str


def live_sample(records: list[MetricRecord], *, per_name: int, names: int, budget: int) -> list[MetricRecord]:
    """The points of one read of a step's metrics that go out live, in the order logged: of the
    first `names` names, each name's last point and evenly spaced ones, `per_name` in all, fewer
    (at least 2) where that many of every name would pass `budget`.

    A training loop logs a point a batch, and per-class metrics come in hundreds of names: one
    event each would be thousands a second for the run page to draw and the worker to publish.
    Every point is stored; the page redraws from the stored series as the step ends or it
    reconnects.
    """
    positions: dict[str, list[int]] = {}
    for at, record in enumerate(records):
        if record.name in positions or len(positions) < names:
            positions.setdefault(record.name, []).append(at)
    each = max(2, min(per_name, budget // max(1, len(positions))))
    kept: list[int] = []
    for ats in positions.values():
        if len(ats) <= each:
            kept += ats
        else:
            kept += [ats[round(i * (len(ats) - 1) / (each - 1))] for i in range(each)]
    return [records[at] for at in sorted(kept)]
