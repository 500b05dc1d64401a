"""Bayesian sampling through optuna's TPE: values inside the space, seeded, learning from what ended."""

from __future__ import annotations

from stepwise.spec.sweep import Distribution, Objective, Sampling, SweepLimits, SweepSpec
from stepwise.sweep.sampling import PlannedTrials, trial_source

SPACE = {
    "x": Distribution("uniform", params={"min_value": -10.0, "max_value": 10.0}),
    "steps": Distribution("quniform", params={"min_value": 0.0, "max_value": 100.0, "q": 10.0}),
    "kind": Distribution("choice", values=["good", "bad", 3]),
}


def spec(trials: int = 40) -> SweepSpec:
    return SweepSpec(
        search_space=SPACE,
        objective=Objective("loss", "minimize"),
        sampling=Sampling("bayesian"),
        limits=SweepLimits(max_total_trials=trials, max_concurrent_trials=2),
    )


def loss(params: dict) -> float:
    return (params["x"] - 3.0) ** 2 + (0 if params["kind"] == "good" else 25)


def sweep(seed: int, trials: int = 40) -> list[dict]:
    source = trial_source(spec(trials), seed=seed)
    asked = []
    while source.remaining:
        number, params = source.ask()
        asked.append(params)
        # Every third trial fails: the sampler must take that and go on.
        source.tell(number, None if number % 3 == 0 else loss(params))
    return asked


def test_values_stay_in_the_space_and_quniform_is_quantized():
    asked = sweep(seed=1)
    assert len(asked) == 40
    assert all(-10.0 <= p["x"] <= 10.0 for p in asked)
    assert all(p["steps"] % 10 == 0 and 0 <= p["steps"] <= 100 for p in asked)
    assert {p["kind"] for p in asked} <= {"good", "bad", 3}


def test_the_same_seed_proposes_the_same_trials():
    assert sweep(seed=7, trials=15) == sweep(seed=7, trials=15)
    assert sweep(seed=7, trials=15) != sweep(seed=8, trials=15)


def test_later_trials_learn_from_the_earlier_ones():
    asked = sweep(seed=3, trials=60)
    first, last = asked[:10], asked[-20:]
    mean = lambda ps: sum(loss(p) for p in ps) / len(ps)  # noqa: E731
    assert mean(last) < mean(first) / 2
    assert sum(p["kind"] == "good" for p in last) > len(last) / 2


def test_random_and_grid_are_planned_up_front():
    planned = trial_source(SweepSpec(search_space=SPACE, objective=Objective("loss", "minimize")), seed=1)
    assert isinstance(planned, PlannedTrials) and planned.total == 1000
