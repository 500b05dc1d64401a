"""The parameters of a sweep's trials.

Random and grid sampling do not learn from finished trials, so the whole list is known up
front: a seeded sweep gives the same trials on every worker and every rerun. Bayesian
sampling (bayesian.py) picks each trial's parameters when a slot frees, from those that ended.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from typing import Protocol

from stepwise.spec.sweep import Distribution, SweepSpec

Value = str | int | float | bool


def quantize(value: float, q: float) -> float | int:
    quantized = round(value / q) * q
    # An integer step gives integers, so `--epochs 30` rather than `--epochs 30.0`.
    return int(quantized) if float(q).is_integer() else quantized


def sample(dist: Distribution, rng: random.Random) -> Value:
    """One value drawn from the distribution."""
    p = dist.params
    if dist.type == "choice":
        return rng.choice(dist.values)
    if dist.type == "randint":
        return rng.randrange(int(p["upper"]))
    if dist.type in ("uniform", "quniform"):
        value = rng.uniform(p["min_value"], p["max_value"])
    elif dist.type in ("loguniform", "qloguniform"):
        value = math.exp(rng.uniform(p["min_value"], p["max_value"]))
    elif dist.type in ("normal", "qnormal"):
        value = rng.gauss(p["mu"], p["sigma"])
    elif dist.type in ("lognormal", "qlognormal"):
        value = math.exp(rng.gauss(p["mu"], p["sigma"]))
    else:
        raise ValueError(f"unknown distribution {dist.type!r}")
    return quantize(value, p["q"]) if "q" in p else value


def random_trials(space: dict[str, Distribution], *, count: int, seed: int) -> list[dict[str, Value]]:
    rng = random.Random(seed)
    # Names in a fixed order: the same seed draws the same values whatever order the YAML lists them in.
    names = sorted(space)
    return [{name: sample(space[name], rng) for name in names} for _ in range(count)]


def grid_size(space: dict[str, Distribution]) -> int:
    return math.prod(len(dist.values) for dist in space.values())


def grid_trials(space: dict[str, Distribution], *, count: int) -> list[dict[str, Value]]:
    """Every combination of the choices, in the YAML's order, up to `count` of them."""
    names = list(space)
    combos = itertools.product(*(space[name].values for name in names))
    return [dict(zip(names, combo, strict=True)) for combo in itertools.islice(combos, count)]


def trial_parameters(spec: SweepSpec, *, seed: int) -> list[dict[str, Value]]:
    """The parameters of each trial, in launch order; `seed` is used when the spec sets none."""
    count = spec.limits.max_total_trials
    if spec.sampling.type == "grid":
        return grid_trials(spec.search_space, count=count)
    return random_trials(
        spec.search_space, count=count, seed=spec.sampling.seed if spec.sampling.seed is not None else seed
    )


def coerce(value: Value, input_type: str) -> Value:
    """A sampled value as the trial's input type takes it (an `integer` input gets 3, never 3.0)."""
    if input_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if input_type == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class TrialSource(Protocol):
    """Where a sweep's next trial comes from; told each trial's objective (None: no value) as it ends."""

    total: int

    @property
    def remaining(self) -> bool: ...

    def ask(self) -> tuple[int, dict[str, Value]]: ...

    def tell(self, number: int, objective: float | None) -> None: ...


class PlannedTrials:
    """Trials decided up front (random, grid): what ends changes nothing."""

    def __init__(self, trials: list[dict[str, Value]]) -> None:
        self.total = len(trials)
        self._queue = deque(enumerate(trials, start=1))

    @property
    def remaining(self) -> bool:
        return bool(self._queue)

    def ask(self) -> tuple[int, dict[str, Value]]:
        return self._queue.popleft()

    def tell(self, number: int, objective: float | None) -> None:
        pass


def trial_source(spec: SweepSpec, *, seed: int) -> TrialSource:
    if spec.sampling.type == "bayesian":
        from .bayesian import BayesianTrials

        return BayesianTrials(spec, seed=seed)
    return PlannedTrials(trial_parameters(spec, seed=seed))
