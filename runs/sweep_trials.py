"""Writes to a sweep's trial rows: created queued, claimed once, ended once through the
transition table.

The sweep driver (in the worker that runs the sweep step) creates, stops and ends trials. The
worker that claimed a trial, when it is not the sweep's own (runs/trial_runner.py), only beats,
ships its progress and hands in its result, each write fenced on its claim. Each change of
state is broadcast after it commits, so the run page's trials table follows.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from runs import artifacts, broadcast
from runs.artifact_files import Manifest
from runs.models import (
    TRIAL_TRANSITIONS,
    Metric,
    StepRun,
    StepState,
    SweepTrial,
    SweepTrialReport,
    TrialState,
)
from runs.step_records import MetricRecord


class IllegalTrialTransition(Exception):
    pass


def _announce(trial: SweepTrial) -> None:
    payload = broadcast.trial_payload(trial)
    transaction.on_commit(lambda: broadcast.send(trial.step_run.run_id, payload))


def _check(trial: SweepTrial, to: TrialState) -> None:
    if to not in TRIAL_TRANSITIONS.get(trial.state, frozenset()):
        raise IllegalTrialTransition(f"{trial}: {trial.state} -> {to}")


@transaction.atomic
def sweep_trial_start(*, step_run: StepRun, number: int, params: dict) -> SweepTrial:
    """A trial to run, queued until a worker claims it."""
    trial = SweepTrial.objects.create(
        step_run=step_run, attempt=step_run.attempt, number=number, params=params, state=TrialState.QUEUED
    )
    _announce(trial)
    return trial


@transaction.atomic
def sweep_trial_claim(*, trial: SweepTrial, worker: str) -> bool:
    """Take the trial to run it, exactly once: False when another worker claimed it first, or
    when its sweep step's attempt is no longer running (canceled, superseded, its worker lost),
    so that no trial of a dead sweep ever starts."""
    _check(trial, TrialState.RUNNING)
    now = timezone.now()
    fields = {"state": TrialState.RUNNING, "worker": worker, "started_at": now, "heartbeat_at": now}
    claimed = SweepTrial.objects.filter(
        pk=trial.pk,
        state=TrialState.QUEUED,
        step_run__state=StepState.RUNNING,
        step_run__attempt=trial.attempt,
    ).update(**fields)
    if not claimed:
        return False
    for key, value in fields.items():
        setattr(trial, key, value)
    _announce(trial)
    return True


def sweep_trial_request_stop(*, trial: SweepTrial, reason: str) -> None:
    """Ask the worker running the trial to kill its process. Not a change of state: the driver
    ends the trial through the transition table once the worker says its process ended."""
    SweepTrial.objects.filter(pk=trial.pk, state=TrialState.RUNNING).update(stop_requested=reason)


@transaction.atomic
def sweep_trial_ship(*, trial: SweepTrial, worker: str, lines: list[str], metrics: list[MetricRecord]) -> str:
    """From the worker running the trial: its new lines and metrics for the driver, and its
    heartbeat. Returns why it must stop ('' to go on): the driver asked, or the trial is no
    longer this worker's to run (ended, its sweep step's attempt gone)."""
    alive = SweepTrial.objects.filter(
        pk=trial.pk,
        state=TrialState.RUNNING,
        worker=worker,
        step_run__state=StepState.RUNNING,
        step_run__attempt=trial.attempt,
    ).update(heartbeat_at=timezone.now())
    if not alive:
        return "canceled: the sweep step or the trial ended"
    if lines or metrics:
        SweepTrialReport.objects.create(
            trial_id=trial.pk, lines=lines, metrics=[[m.name, m.value, m.step] for m in metrics]
        )
    return SweepTrial.objects.values_list("stop_requested", flat=True).get(pk=trial.pk)


def result_outputs(result: dict) -> dict[str, tuple[Manifest, str]]:
    """A result's outputs (see trial_runner.outputs_result), as the executor registers them."""
    return {
        name: (Manifest(sha256=o["sha256"], size=o["size"], file_count=o["file_count"]), o["kind"])
        for name, o in (result.get("outputs") or {}).items()
    }


@transaction.atomic
def sweep_trial_hand_in(*, trial: SweepTrial, worker: str, result: dict) -> bool:
    """From the worker running the trial: its process ended, with this result (see
    SweepTrial.result); False when the trial was no longer its own. Its stored outputs get their
    rows now, referenced by the trial, so that no garbage collection takes them before its
    sweep has chosen."""
    if not SweepTrial.objects.filter(pk=trial.pk, state=TrialState.RUNNING, worker=worker).update(result=result):
        return False
    trial.artifacts.add(*[artifacts.register(manifest, kind) for manifest, kind in result_outputs(result).values()])
    return True


@transaction.atomic
def sweep_trial_take_reports(*, trial: SweepTrial) -> tuple[list[str], list[MetricRecord]]:
    """For the driver: what the worker running the trial shipped since the last call, in order.
    Only the driver deletes reports, so none is taken twice or lost."""
    reports = list(SweepTrialReport.objects.filter(trial_id=trial.pk).order_by("pk"))
    if not reports:
        return [], []
    SweepTrialReport.objects.filter(pk__in=[r.pk for r in reports]).delete()
    lines = [line for r in reports for line in r.lines]
    metrics = [MetricRecord(str(n), float(v), int(s)) for r in reports for n, v, s in r.metrics]
    return lines, metrics


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
    _check(trial, to)
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


def sweep_trials_end_orphans(*, stale_before) -> list[int]:
    """Cancel the trials that no driver will end: their sweep step's attempt stopped running
    while its worker was dead (lost, or canceled meanwhile). Queued ones can no longer be
    claimed; running ones once their worker, which stops when it hears the step ended, has
    not beaten since `stale_before`. Returns their ids."""
    live_sweep = Q(step_run__state=StepState.RUNNING, step_run__attempt=F("attempt"))
    quiet = Q(state=TrialState.QUEUED) | Q(heartbeat_at__lt=stale_before)
    orphans = SweepTrial.objects.filter(state__in=[TrialState.QUEUED, TrialState.RUNNING]).exclude(live_sweep)
    ended = []
    for trial in orphans.filter(quiet).select_related("step_run"):
        reason = f"canceled: its sweep step's attempt {trial.attempt} ended without it"
        canceled = TrialState.CANCELED
        if sweep_trial_finish(trial=trial, to=canceled, metrics=trial.metrics, objective=None, reason=reason):
            ended.append(trial.pk)
    return ended


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
