"""Comparing metric values by the sweep's goal, and picking the best trial."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def better(goal: str, a: float, b: float) -> bool:
    """Whether `a` is strictly better than `b`."""
    return a > b if goal == "maximize" else a < b


def best_value(goal: str, values: Iterable[float]) -> float:
    return max(values) if goal == "maximize" else min(values)


def best_trial(goal: str, objectives: Mapping[int, float]) -> int | None:
    """The trial number with the best objective; the earliest trial wins a tie, so the pick is stable."""
    best: int | None = None
    for number in sorted(objectives):
        if best is None or better(goal, objectives[number], objectives[best]):
            best = number
    return best
