"""Bayesian sampling: each trial's parameters chosen from the trials completed so far.

Optuna's TPE sampler does the modelling (optuna is a server dependency, imported only here).
Trials run concurrently, so the sampler treats the ones still running as if they had
scored like the worst so far ("constant liar"), which keeps it from proposing the same
point to every free slot at once.
"""

from __future__ import annotations

import math
import warnings

from stepwise.spec.sweep import Distribution, SweepSpec

from .sampling import Value, quantize


def _optuna_distribution(dist: Distribution):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if dist.type == "choice":
        return CategoricalDistribution(dist.values)
    # quniform is drawn as uniform and quantized after: the model learns from the value drawn.
    return FloatDistribution(dist.params["min_value"], dist.params["max_value"])


class BayesianTrials:
    """Asked for one trial's parameters at a time, told each trial's objective when it ends."""

    def __init__(self, spec: SweepSpec, *, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self._study = optuna.create_study(direction=spec.objective.goal, sampler=sampler)
        self._space = spec.search_space
        self._distributions = {name: _optuna_distribution(d) for name, d in spec.search_space.items()}
        self.total = spec.limits.max_total_trials
        self._asked = 0
        self._open: dict = {}

    @property
    def remaining(self) -> bool:
        return self._asked < self.total

    def ask(self) -> tuple[int, dict[str, Value]]:
        trial = self._study.ask(self._distributions)
        self._asked += 1
        self._open[self._asked] = trial
        params: dict[str, Value] = {}
        for name, dist in self._space.items():
            value = trial.params[name]
            params[name] = quantize(value, dist.params["q"]) if dist.type == "quniform" else value
        return self._asked, params

    def tell(self, number: int, objective: float | None) -> None:
        from optuna.trial import TrialState

        trial = self._open.pop(number, None)
        if trial is None:
            return
        if objective is None or not math.isfinite(objective):
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, objective)
