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
