"""Reads for a sweep step on the run page: its trials as a table and as parallel coordinates."""

from __future__ import annotations

from dataclasses import dataclass

from runs.models import StepRun, SweepTrial, TrialState
from stepwise.spec.model import Step
from stepwise.sweep.sampling import grid_size


@dataclass
class TrialRow:
    number: int
    state: str
    values: list[str]
    # The objective of a finished trial, else the primary metric's latest report.
    metric: str
    is_best: bool
    duration_s: float | None
    reason: str
    # The worker that claimed it; empty while queued.
    worker: str


@dataclass
class SweepTable:
    primary_metric: str
    goal: str
    names: list[str]
    rows: list[TrialRow]
    counts: dict[str, int]
    # How many trials the sweep runs in all.
    total: int
    # For the parallel coordinates plot (static/js/sweep_plot.js), through json_script.
    plot: dict


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metric(trial: SweepTrial, primary: str) -> float | None:
    if trial.objective is not None:
        return trial.objective
    series = (trial.metrics or {}).get(primary) or []
    return series[-1] if series else None


def sweep_table(step_run: StepRun, step: Step) -> SweepTable | None:
    """The trials of the step run's current attempt; None for a step that is no sweep."""
    if step.sweep is None:
        return None
    primary = step.sweep.objective.primary_metric
    space, limits = step.sweep.search_space, step.sweep.limits
    names = list(step.sweep.search_space)
    trials = list(SweepTrial.objects.filter(step_run=step_run, attempt=step_run.attempt).order_by("number"))
    rows = []
    plot_trials = []
    for trial in trials:
        metric = _metric(trial, primary)
        rows.append(
            TrialRow(
                number=trial.number,
                state=trial.state,
                values=[_text(trial.params.get(name, "")) for name in names],
                metric="—" if metric is None else _text(metric),
                is_best=trial.is_best,
                duration_s=trial.duration_s,
                reason=trial.reason,
                worker=trial.worker,
            )
        )
        plot_trials.append(
            {
                "number": trial.number,
                "state": trial.state,
                "best": trial.is_best,
                "values": [trial.params.get(name) for name in names] + [metric],
            }
        )
    total = limits.max_total_trials
    if step.sweep.sampling.type == "grid":
        total = min(total, grid_size(space))
    counts = {state.value: sum(1 for t in trials if t.state == state) for state in TrialState}
    return SweepTable(
        primary_metric=primary,
        goal=step.sweep.objective.goal,
        names=names,
        rows=rows,
        counts={k: v for k, v in counts.items() if v},
        total=total,
        plot={"axes": [*names, primary], "trials": plot_trials},
    )
