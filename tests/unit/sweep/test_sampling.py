from __future__ import annotations

import math
import random

import pytest

from stepwise.spec.sweep import Distribution, Objective, Sampling, SweepLimits, SweepSpec
from stepwise.sweep.sampling import coerce, grid_size, grid_trials, random_trials, sample, trial_parameters

DRAWS = 2000


def draws(dist: Distribution, seed: int = 1) -> list:
    rng = random.Random(seed)
    return [sample(dist, rng) for _ in range(DRAWS)]


def test_choice_draws_only_the_values_and_all_of_them():
    values = draws(Distribution("choice", values=["a", 2, 3.5, True]))
    assert set(values) == {"a", 2, 3.5, True}


def test_randint_is_zero_to_upper_minus_one():
    values = draws(Distribution("randint", params={"upper": 5}))
    assert set(values) == {0, 1, 2, 3, 4}
    assert all(isinstance(v, int) for v in values)


def test_uniform_stays_within_its_bounds():
    values = draws(Distribution("uniform", params={"min_value": -2.0, "max_value": 3.0}))
    assert all(-2.0 <= v <= 3.0 for v in values)
    assert min(values) < -1.5 and max(values) > 2.5


def test_quniform_is_quantized_and_integer_steps_give_integers():
    values = draws(Distribution("quniform", params={"min_value": 0, "max_value": 100, "q": 10}))
    assert set(values) <= {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
    assert all(isinstance(v, int) for v in values)
    fractional = draws(Distribution("quniform", params={"min_value": 0.0, "max_value": 1.0, "q": 0.25}))
    assert {round(v, 9) for v in fractional} <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_loguniform_bounds_are_in_log_space():
    values = draws(Distribution("loguniform", params={"min_value": math.log(1e-4), "max_value": math.log(1e-1)}))
    assert all(1e-4 * 0.999999 <= v <= 1e-1 * 1.000001 for v in values)
    # Spread evenly over the orders of magnitude, not over the range.
    assert sum(v < 1e-3 for v in values) > DRAWS / 5


def test_qloguniform_is_quantized():
    values = draws(Distribution("qloguniform", params={"min_value": 0.0, "max_value": math.log(1000), "q": 5}))
    assert all(v % 5 == 0 and 0 <= v <= 1000 for v in values)


def test_normal_and_qnormal_centre_on_mu():
    values = draws(Distribution("normal", params={"mu": 10.0, "sigma": 2.0}))
    assert abs(sum(values) / DRAWS - 10.0) < 0.3
    assert min(values) < 6 and max(values) > 14
    quantized = draws(Distribution("qnormal", params={"mu": 10.0, "sigma": 2.0, "q": 0.5}))
    assert all((v / 0.5).is_integer() for v in quantized)


def test_lognormal_and_qlognormal_are_positive_exponents_of_a_normal():
    values = draws(Distribution("lognormal", params={"mu": 0.0, "sigma": 1.0}))
    assert all(v > 0 for v in values)
    assert abs(sorted(values)[DRAWS // 2] - 1.0) < 0.15  # the median is exp(mu)
    quantized = draws(Distribution("qlognormal", params={"mu": 2.0, "sigma": 0.5, "q": 1}))
    assert all(isinstance(v, int) and v >= 0 for v in quantized)


SPACE = {
    "lr": Distribution("loguniform", params={"min_value": -7.0, "max_value": -1.0}),
    "layers": Distribution("randint", params={"upper": 4}),
    "act": Distribution("choice", values=["relu", "tanh"]),
}


def test_seeded_random_sampling_is_reproducible_and_seed_dependent():
    first = random_trials(SPACE, count=12, seed=42)
    assert random_trials(SPACE, count=12, seed=42) == first
    # The order the YAML lists the space in does not change the draws.
    assert random_trials(dict(reversed(SPACE.items())), count=12, seed=42) == first
    assert random_trials(SPACE, count=12, seed=43) != first
    assert len(first) == 12 and all(set(t) == {"lr", "layers", "act"} for t in first)


def test_grid_enumerates_every_combination_in_order_up_to_the_limit():
    space = {
        "a": Distribution("choice", values=[1, 2, 3]),
        "b": Distribution("choice", values=["x", "y"]),
    }
    assert grid_size(space) == 6
    assert grid_trials(space, count=100) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 3, "b": "x"},
        {"a": 3, "b": "y"},
    ]
    assert grid_trials(space, count=4) == grid_trials(space, count=100)[:4]


def spec(sampling: Sampling, space=SPACE, total: int = 5) -> SweepSpec:
    return SweepSpec(
        search_space=space,
        objective=Objective("acc", "maximize"),
        sampling=sampling,
        limits=SweepLimits(max_total_trials=total, max_concurrent_trials=2),
    )


def test_trial_parameters_use_the_specs_seed_over_the_drivers():
    seeded = spec(Sampling("random", seed=7))
    assert trial_parameters(seeded, seed=1) == trial_parameters(seeded, seed=2) == random_trials(SPACE, count=5, seed=7)
    unseeded = spec(Sampling("random"))
    assert trial_parameters(unseeded, seed=1) == random_trials(SPACE, count=5, seed=1)
    grid = spec(Sampling("grid"), space={"act": SPACE["act"]})
    assert trial_parameters(grid, seed=1) == [{"act": "relu"}, {"act": "tanh"}]


@pytest.mark.parametrize(
    ("value", "input_type", "expected"),
    [(3.0, "integer", 3), (3.5, "integer", 3.5), (2, "number", 2.0), ("a", "string", "a"), (True, "number", True)],
)
def test_coerce_gives_the_inputs_type(value, input_type, expected):
    result = coerce(value, input_type)
    assert result == expected and type(result) is type(expected)
