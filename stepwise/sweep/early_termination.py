"""Early termination policies as pure functions of the primary metric's reports.

A trial's series is the values of the primary metric in the order it logged them; report k
(1-based) is evaluated when k is past `delay_evaluation` and a multiple of
`evaluation_interval`. Each policy compares the trial's report k with the other trials' first
k reports (those that reached k), as Azure ML's policies compare runs at an interval.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from stepwise.spec.sweep import EarlyTermination

from .objective import best_value, better


def evaluation_due(policy: EarlyTermination, reports: int) -> bool:
    interval = max(policy.evaluation_interval, 1)
    return reports > policy.delay_evaluation and reports % interval == 0


def bandit(
    policy: EarlyTermination, goal: str, series: Sequence[float], others: Sequence[Sequence[float]]
) -> str | None:
    k = len(series)
    peers = [s[k - 1] for s in others if len(s) >= k] + [series[-1]]
    best = best_value(goal, peers)
    value = series[-1]
    if policy.slack_factor is not None:
        # Azure ML's best / (1 + slack) (maximize) and best * (1 + slack) (minimize), written so
        # that a negative best (a log-likelihood, a negated loss) widens the band rather than inverting it.
        factor = policy.slack_factor
        margin = abs(best) * (factor / (1 + factor) if goal == "maximize" else factor)
        limit = best - margin if goal == "maximize" else best + margin
        what = f"slack_factor {policy.slack_factor:g}"
    else:
        slack = policy.slack_amount or 0.0
        limit = best - slack if goal == "maximize" else best + slack
        what = f"slack_amount {policy.slack_amount:g}"
    if better(goal, limit, value):
        return f"bandit: {value:g} at report {k} is outside {what} of the best {best:g}"
    return None


def median_stopping(
    policy: EarlyTermination, goal: str, series: Sequence[float], others: Sequence[Sequence[float]]
) -> str | None:
    k = len(series)
    averages = [statistics.fmean(s[:k]) for s in others if len(s) >= k]
    if not averages:
        return None
    median = statistics.median(averages)
    own_best = best_value(goal, series)
    if better(goal, median, own_best):
        return (
            f"median_stopping: best {own_best:g} by report {k} is worse than the median {median:g} of running averages"
        )
    return None


def truncation_selection(
    policy: EarlyTermination, goal: str, series: Sequence[float], others: Sequence[Sequence[float]]
) -> str | None:
    k = len(series)
    value = series[-1]
    peers = [s[k - 1] for s in others if len(s) >= k]
    cut = (len(peers) + 1) * policy.truncation_percentage // 100
    if cut < 1:
        return None
    # Rank from the worst: the trial is cut when it is among the `cut` worst at report k.
    worse_than = sum(1 for v in peers if better(goal, v, value))
    if worse_than >= len(peers) + 1 - cut:
        return f"truncation_selection: {value:g} at report {k} is in the worst {policy.truncation_percentage}%"
    return None


_POLICIES = {"bandit": bandit, "median_stopping": median_stopping, "truncation_selection": truncation_selection}


def termination_reason(
    policy: EarlyTermination | None, goal: str, series: Sequence[float], others: Sequence[Sequence[float]]
) -> str | None:
    """Why the trial with this series should stop now, or None to let it run on."""
    if policy is None or not series or not evaluation_due(policy, len(series)):
        return None
    return _POLICIES[policy.type](policy, goal, series, others)
