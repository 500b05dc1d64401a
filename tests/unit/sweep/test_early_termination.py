from __future__ import annotations

import pytest

from stepwise.spec.sweep import EarlyTermination
from stepwise.sweep.early_termination import evaluation_due, termination_reason
from stepwise.sweep.objective import best_trial


def bandit(**kwargs) -> EarlyTermination:
    return EarlyTermination(type="bandit", **kwargs)


def test_evaluation_waits_for_the_delay_then_every_interval():
    policy = EarlyTermination(type="median_stopping", evaluation_interval=2, delay_evaluation=3)
    assert [k for k in range(1, 11) if evaluation_due(policy, k)] == [4, 6, 8, 10]


def test_no_policy_or_no_report_never_stops():
    assert termination_reason(None, "maximize", [0.0], [[1.0]]) is None
    assert termination_reason(bandit(slack_factor=0.1), "maximize", [], [[1.0]]) is None


def test_bandit_slack_factor_maximize_is_azure_mls_ratio():
    policy = bandit(slack_factor=0.25)  # best 1.0: under 1.0 / 1.25 = 0.8 stops
    assert termination_reason(policy, "maximize", [0.79], [[1.0]]).startswith("bandit:")
    assert termination_reason(policy, "maximize", [0.81], [[1.0]]) is None
    # Compared at the same report: the other trial's later, better values do not count.
    assert termination_reason(policy, "maximize", [0.79], [[0.7, 5.0]]) is None


def test_bandit_slack_factor_minimize_and_negative_metrics():
    policy = bandit(slack_factor=0.5)  # best loss 2.0: over 3.0 stops
    assert termination_reason(policy, "minimize", [3.1], [[2.0]])
    assert termination_reason(policy, "minimize", [2.9], [[2.0]]) is None
    # A negative best widens the band, it does not stop the best trial itself.
    assert termination_reason(policy, "maximize", [-1.0], [[-1.2]]) is None
    assert termination_reason(policy, "maximize", [-2.0], [[-1.0]])


def test_bandit_slack_amount_is_an_absolute_distance():
    policy = bandit(slack_amount=0.2)
    assert termination_reason(policy, "maximize", [0.7], [[0.95]])
    assert termination_reason(policy, "maximize", [0.8], [[0.95]]) is None
    assert termination_reason(policy, "minimize", [1.3], [[1.0]])


def test_bandit_respects_delay_evaluation():
    policy = bandit(slack_amount=0.0, delay_evaluation=2)
    assert termination_reason(policy, "maximize", [0.1, 0.1], [[1.0, 1.0]]) is None
    assert termination_reason(policy, "maximize", [0.1, 0.1, 0.1], [[1.0, 1.0, 1.0]])


def test_median_stopping_compares_the_best_value_with_the_median_of_running_averages():
    policy = EarlyTermination(type="median_stopping")
    others = [[0.5, 0.7], [0.4, 0.6], [0.9, 0.9]]  # running averages at report 2: 0.6, 0.5, 0.9
    assert termination_reason(policy, "maximize", [0.3, 0.55], others)
    assert termination_reason(policy, "maximize", [0.3, 0.65], others) is None
    assert termination_reason(policy, "minimize", [0.9, 0.7], others)
    assert termination_reason(policy, "minimize", [0.3, 0.65], others) is None
    # Alone, a trial has nobody to compare with.
    assert termination_reason(policy, "maximize", [0.0], []) is None


def test_truncation_selection_stops_the_worst_percentage_at_the_report():
    policy = EarlyTermination(type="truncation_selection", truncation_percentage=25)
    others = [[0.9], [0.8], [0.7]]  # with the trial, 4 trials: the worst 1 stops
    assert termination_reason(policy, "maximize", [0.1], others).startswith("truncation_selection:")
    assert termination_reason(policy, "maximize", [0.75], others) is None
    assert termination_reason(policy, "minimize", [0.95], others)
    # 25% of 2 trials is no trial.
    assert termination_reason(policy, "maximize", [0.1], [[0.9]]) is None


@pytest.mark.parametrize(("goal", "expected"), [("maximize", 2), ("minimize", 3)])
def test_best_trial_by_goal_with_the_earliest_winning_a_tie(goal, expected):
    assert best_trial(goal, {1: 0.5, 2: 0.9, 3: 0.1, 4: 0.9}) == expected
    assert best_trial(goal, {}) is None
