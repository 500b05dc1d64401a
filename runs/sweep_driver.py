"""A sweep step's driver: which trial starts when, which stops early, which is best.

It runs in the worker thread that runs the sweep step. Trials are launched through a
callable the executor gives (`launch`), so they run exactly as command steps do (sandbox,
environment, log masking, metrics file). A launched trial is queued for any worker of the
sweep's queue to claim, and run by this worker when none does in time (runs/trial_handles.py);
either way the driver sees it through the same `Trial`. This loop alone decides: it moves the
trials' lines into the sweep step's log, their metrics into their rows, evaluates the early
termination policy whenever the primary metric is reported, and ends each trial's row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runs import sweep_trials
from runs.artifact_files import Manifest
from runs.models import StepRun, SweepTrial, TrialState
from runs.step_records import MetricRecord, ParamRecord
from stepwise.spec.sweep import SweepSpec
from stepwise.sweep.early_termination import termination_reason
from stepwise.sweep.objective import best_trial
from stepwise.sweep.sampling import TrialSource, Value, coerce, trial_source

POLL_S = 0.1
HEARTBEAT_S = 1.0
# Metrics are written to a running trial's row at most this often (each report also reaches the page).
REPORT_S = 1.0
ROW_METRIC_NAMES = 100
ROW_METRIC_VALUES = 1000


class Trial(Protocol):
    """A launched trial's process, as the driver sees it (executor.TrialAttempt run here, or
    trial_handles.ClaimableTrial, which runs one here or follows one run by another worker)."""

    number: int
    returncode: int | None
    error: BaseException | None
    stop_reason: str
    stopped_by: str
    # Its outputs on this host, stored when it is chosen as best ...
    outputs: dict[str, tuple[Path, str]]

    def done(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...

    def stop(self, reason: str) -> None: ...

    def take(self) -> tuple[list[str], list[MetricRecord | ParamRecord]]: ...


class ClaimedTrial(Trial, Protocol):
    """What `launch` returns: a Trial that may wait for a worker, and run on another host."""

    # ... or already in the artifact store, when another worker ran it.
    stored_outputs: dict[str, tuple[Manifest, str]]
    # Why it could not start, once claimed (what `launch` raising TrialSetupError says).
    setup_error: str
    # The worker that claimed it; empty while queued.
    worker: str

    def poll(self) -> None:
        """Claim, start or follow it: called by the driver, in its thread, on each turn."""


class SweepLog(Protocol):
    """The sweep step's own attempt: its log, heartbeat and fencing (executor.SweepAttempt)."""

    step_run: StepRun

    @property
    def pending_lines(self) -> list[str]: ...

    def add_lines(self, lines: list[str]) -> None: ...

    def flush(self, *, force: bool = False) -> bool: ...


class TrialSetupError(Exception):
    """A trial could not start (its command does not render, an input is missing)."""


@dataclass
class _Tracked:
    trial: ClaimedTrial
    row: SweepTrial
    metrics: dict[str, list[float]] = field(default_factory=dict)
    terminated: str = ""
    reported_at: float = 0.0
    changed: bool = False
    claimed: bool = False


@dataclass
class SweepOutcome:
    best: int | None
    # The best trial's outputs, which become the sweep step's outputs: paths on this host when
    # this worker ran it, else what its worker stored.
    outputs: dict[str, tuple[Path, str]]
    stored_outputs: dict[str, tuple[Manifest, str]] = field(default_factory=dict)
    # Why the sweep failed; empty when a best trial was found.
    failure: str = ""
    fenced: bool = False


def _for_row(metrics: dict[str, list[float]], primary: str) -> dict[str, list[float]]:
    """What a trial row keeps of its metrics: the latest values, so that a trial logging a
    million points does not write a million-entry row each second (early termination reads
    the driver's own copy)."""
    names = sorted(metrics, key=lambda name: (name != primary, name))[:ROW_METRIC_NAMES]
    return {name: metrics[name][-ROW_METRIC_VALUES:] for name in names}


def _format_params(params: dict[str, Value]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in params.items())


class SweepDriver:
    def __init__(
        self,
        *,
        spec: SweepSpec,
        input_types: dict[str, str],
        log: SweepLog,
        launch: Callable[[int, dict[str, Value]], ClaimedTrial],
        seed: int,
    ) -> None:
        self.spec = spec
        self.input_types = input_types
        self.log = log
        self.launch = launch
        self.seed = seed
        self.running: dict[int, _Tracked] = {}
        self.ended: dict[int, _Tracked] = {}
        self.stopping = ""
        self.fenced = False
        self.source: TrialSource

    @property
    def primary(self) -> str:
        return self.spec.objective.primary_metric

    def run(self) -> SweepOutcome:
        spec = self.spec
        self.source = source = trial_source(spec, seed=self.seed)
        seed_note = f" (seed {spec.sampling.seed if spec.sampling.seed is not None else self.seed})"
        self.log.add_lines(
            [
                f"[sweep] {source.total} trials, {spec.sampling.type} sampling"
                f"{seed_note if spec.sampling.type != 'grid' else ''}, "
                f"at most {spec.limits.max_concurrent_trials} at once; "
                f"{spec.objective.goal} {self.primary}"
            ]
        )
        started = time.monotonic()
        last_beat = started
        timeout = spec.limits.timeout_s
        try:
            # Once stopping (timeout, cancel), the trials not started yet never start.
            while (source.remaining and not self.stopping) or self.running:
                now = time.monotonic()
                if timeout and not self.stopping and now - started > timeout:
                    self._stop_all(f"timeout: the sweep ran longer than {timeout} s")
                while source.remaining and not self.stopping and len(self.running) < spec.limits.max_concurrent_trials:
                    self._start(*source.ask())
                time.sleep(POLL_S)
                for tracked in list(self.running.values()):
                    tracked.trial.poll()
                    if not tracked.claimed and tracked.trial.worker:
                        tracked.claimed = True
                        self.log.add_lines([f"[trial {tracked.row.number}] running on {tracked.trial.worker}"])
                    self._drain(tracked)
                    if tracked.trial.done():
                        self._drain(tracked)
                        self._finish(tracked)
                # As a command step's attempt: lines stored within POLL_S, a heartbeat each second.
                if self.log.pending_lines or time.monotonic() - last_beat >= HEARTBEAT_S:
                    last_beat = time.monotonic()
                    if not self.log.flush() and not self.fenced:
                        self.fenced = True
                        self._stop_all("canceled: the sweep step was canceled or superseded")
        except BaseException:
            self._stop_all("the worker failed while running the sweep")
            for tracked in self.running.values():
                tracked.trial.join(timeout=10)
            raise
        return self._outcome()

    # -- trials ---------------------------------------------------------------------------

    def _start(self, number: int, sampled: dict[str, Value]) -> None:
        params = {name: coerce(value, self.input_types.get(name, "string")) for name, value in sampled.items()}
        row = sweep_trials.sweep_trial_start(step_run=self.log.step_run, number=number, params=params)
        try:
            trial = self.launch(number, params)
        except TrialSetupError as exc:
            self._setup_failed(_Tracked(trial=None, row=row), str(exc))  # type: ignore[arg-type]
            return
        self.running[number] = _Tracked(trial=trial, row=row)
        self.log.add_lines([f"[trial {number}] queued: {_format_params(params)}"])

    def _setup_failed(self, tracked: _Tracked, error: str) -> None:
        number = tracked.row.number
        reason = f"trial {number} could not start: {error}"
        self.log.add_lines([f"[sweep] {reason}"])
        sweep_trials.sweep_trial_finish(
            trial=tracked.row, to=TrialState.FAILED, metrics={}, objective=None, reason=reason
        )
        self.source.tell(number, None)
        self.ended[number] = tracked
        # What stops one trial's setup (a missing input, an unreadable artifact) stops every
        # other's: no more start, and the sweep fails with this reason unless one completed.
        self._stop_all(reason)

    def _stop_all(self, reason: str) -> None:
        self.stopping = self.stopping or reason
        for tracked in self.running.values():
            tracked.trial.stop(reason)

    def _series(self, number: int) -> list[float]:
        tracked = self.running.get(number) or self.ended[number]
        return tracked.metrics.get(self.primary, [])

    def _drain(self, tracked: _Tracked) -> None:
        lines, records = tracked.trial.take()
        if lines:
            self.log.add_lines([f"[trial {tracked.row.number}] {line}" for line in lines])
        policy = self.spec.early_termination
        for record in records:
            if isinstance(record, ParamRecord):
                continue  # a trial's parameters are its sampled inputs, already on its row
            tracked.metrics.setdefault(record.name, []).append(record.value)
            tracked.changed = True
            if record.name != self.primary or tracked.terminated or tracked.trial.stopped_by:
                continue
            series = tracked.metrics[self.primary]
            others = [
                self._series(n)
                for n in [*self.running, *self.ended]
                if n != tracked.row.number and not (policy and policy.exclude_finished_jobs and n in self.ended)
            ]
            reason = termination_reason(policy, self.spec.objective.goal, series, others)
            if reason:
                tracked.terminated = reason
                tracked.trial.stop(f"early termination: {reason}")
                self.log.add_lines([f"[trial {tracked.row.number}] stopped early: {reason}"])
        now = time.monotonic()
        if tracked.changed and now - tracked.reported_at >= REPORT_S and not tracked.trial.done():
            tracked.reported_at, tracked.changed = now, False
            sweep_trials.sweep_trial_report(trial=tracked.row, metrics=_for_row(tracked.metrics, self.primary))

    def _finish(self, tracked: _Tracked) -> None:
        trial, number = tracked.trial, tracked.row.number
        del self.running[number]
        # Claimed meanwhile, by this worker or another: its row is no longer as it was created.
        tracked.row.refresh_from_db(fields=["state", "worker", "started_at"])
        if trial.setup_error:
            self._setup_failed(tracked, trial.setup_error)
            return
        self.ended[number] = tracked
        series = tracked.metrics.get(self.primary, [])
        objective: float | None = None
        if trial.error is not None:
            state, reason = TrialState.FAILED, f"worker error: {trial.error}"
        elif tracked.terminated:
            state, reason = TrialState.EARLY_TERMINATED, tracked.terminated
        elif trial.stopped_by:
            state, reason = TrialState.CANCELED, trial.stopped_by
        elif trial.stop_reason:
            state, reason = TrialState.FAILED, trial.stop_reason  # its trial_timeout
        elif trial.returncode != 0:
            state, reason = TrialState.FAILED, f"exit code {trial.returncode}"
        elif not series:
            state, reason = TrialState.FAILED, f"the trial logged no value of '{self.primary}'"
        else:
            state, reason, objective = TrialState.COMPLETED, "", series[-1]
        self.source.tell(number, objective)
        sweep_trials.sweep_trial_finish(
            trial=tracked.row,
            to=state,
            metrics=_for_row(tracked.metrics, self.primary),
            objective=objective,
            reason=reason,
            exit_code=trial.returncode,
        )
        if objective is not None:
            sweep_trials.sweep_objective_metric(
                step_run=self.log.step_run, name=self.primary, value=objective, number=number
            )
        summary = f"{state.label}" + (f" with {self.primary}={objective:g}" if objective is not None else "")
        self.log.add_lines([f"[trial {number}] {summary}" + (f": {reason}" if reason else "")])

    def _outcome(self) -> SweepOutcome:
        if self.fenced:
            return SweepOutcome(best=None, outputs={}, failure=self.stopping, fenced=True)
        objectives = {n: t.row.objective for n, t in self.ended.items() if t.row.objective is not None}
        best = best_trial(self.spec.objective.goal, objectives)
        if best is None:
            failure = f"no trial completed with a value of '{self.primary}'"
            if self.stopping:
                failure += f" ({self.stopping})"
            self.log.add_lines([f"[sweep] {failure}"])
            return SweepOutcome(best=None, outputs={}, failure=failure)
        chosen = self.ended[best]
        sweep_trials.sweep_trial_mark_best(trial=chosen.row)
        self.log.add_lines(
            [
                f"[sweep] best: trial {best} with {self.primary}={objectives[best]:g} "
                f"({_format_params(chosen.row.params)})"
            ]
        )
        return SweepOutcome(
            best=best, outputs=dict(chosen.trial.outputs), stored_outputs=dict(chosen.trial.stored_outputs)
        )
