"""Writes to a sweep's trial rows: created running, ended once through the transition table.

Only the sweep driver (in the worker that runs the sweep step) calls these; each write is
broadcast after it commits, so the run page's trials table follows.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from runs import broadcast
from runs.models import TRIAL_TRANSITIONS, Metric, StepRun, SweepTrial, TrialState


class IllegalTrialTransition(Exception):
    pass


def _announce(trial: SweepTrial) -> None:
    payload = broadcast.trial_payload(trial)
    transaction.on_commit(lambda: broadcast.send(trial.step_run.run_id, payload))


@transaction.atomic
def sweep_trial_start(*, step_run: StepRun, number: int, params: dict) -> SweepTrial:
    trial = SweepTrial.objects.create(
        step_run=step_run,
        attempt=step_run.attempt,
        number=number,
        params=params,
        state=TrialState.RUNNING,
        started_at=timezone.now(),
    )
    _announce(trial)
    return trial


@transaction.atomic
def sweep_trial_report(*, trial: SweepTrial, metrics: dict[str, list[float]]) -> None:
    """The metrics a running trial has logged so far (not a change of state)."""
    SweepTrial.objects.filter(pk=trial.pk).update(metrics=metrics)
    trial.metrics = metrics
    _announce(trial)


@transaction.atomic
def sweep_trial_finish(
    *,
    trial: SweepTrial,
    to: TrialState,
    metrics: dict[str, list[float]],
    objective: float | None,
    reason: str = "",
    exit_code: int | None = None,
) -> bool:
    """End the trial; False when it had ended already. Its objective also goes on the sweep step's
    chart, as the primary metric at step = trial number."""
    if to not in TRIAL_TRANSITIONS.get(trial.state, frozenset()):
        raise IllegalTrialTransition(f"{trial}: {trial.state} -> {to}")
    fields = {
        "state": to,
        "metrics": metrics,
        "objective": objective,
        "reason": reason,
        "exit_code": exit_code,
        "finished_at": timezone.now(),
    }
    if not SweepTrial.objects.filter(pk=trial.pk, state=trial.state).update(**fields):
        return False
    for key, value in fields.items():
        setattr(trial, key, value)
    _announce(trial)
    return True


@transaction.atomic
def sweep_trial_mark_best(*, trial: SweepTrial) -> None:
    SweepTrial.objects.filter(pk=trial.pk).update(is_best=True)
    trial.is_best = True
    _announce(trial)


def sweep_objective_metric(*, step_run: StepRun, name: str, value: float, number: int) -> None:
    """A finished trial's objective on the sweep step's own chart: the metric at step = trial number."""
    Metric.objects.create(step_run=step_run, name=name, value=value, step=number)
    payload = broadcast.metric_payload(step_run, name=name, value=value, step=number)
    transaction.on_commit(lambda: broadcast.send(step_run.run_id, payload))
