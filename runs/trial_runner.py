"""A sweep trial run by a worker that is not its sweep's: the body of runs.jobs.run_sweep_trial.

The worker claims the trial's row (the sweep's own worker may have claimed it first: then it
leaves it), prepares it as the sweep's worker would (executor.prepare_trial), and runs its
process in this thread. It owns nothing of the sweep step: its lines and metrics go to the
trial's row as reports that the sweep's driver moves into the step's log and the trial's
metrics, each report beats the trial's heart, and each reads the driver's stop request. Its
outputs, when it succeeds, go to the artifact store, so the sweep can adopt them from any host.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time

from runs import artifacts, executor, sweep_trials
from runs import worker as worker_
from runs.executor import Prepared, TrialAttempt
from runs.models import ComputeTarget, StepRun, SweepTrial, TrialState
from runs.specs import version_file_map, version_spec
from runs.step_records import MetricRecord
from runs.sweep_driver import TrialSetupError

log = logging.getLogger(__name__)

# How often a trial's lines and metrics are shipped to its row (and its heart beats, and its stop
# request is read): the driver's own trials are moved into the step's log as often.
SHIP_S = 0.5


class RemoteTrialAttempt(TrialAttempt):
    """`Attempt.run` in this worker's thread, its buffered lines and metrics shipped to its row."""

    def __init__(self, step_run: StepRun, prepared: Prepared, *, trial: SweepTrial, timeout_s: int | None, tag: str):
        super().__init__(step_run, prepared, number=trial.number, timeout_s=timeout_s, tag=tag)
        self.trial = trial
        self.worker = trial.worker
        self.shipped_at = 0.0

    @property
    def pending_lines(self) -> list[str]:
        return self._lines

    def flush(self, *, force: bool = False) -> bool:
        """Ship what is pending (at most each SHIP_S); False once it must stop (Attempt.run kills it)."""
        now = time.monotonic()
        self.last_flush = now
        if self.stopped_by:
            return False
        if not force and now - self.shipped_at < SHIP_S:
            return True
        self.shipped_at = now
        stop = self.ship()
        if stop:
            self.stop(stop)
            return False
        return True

    def ship(self) -> str:
        lines, records = self.take()
        metrics = [r for r in records if isinstance(r, MetricRecord)]
        return sweep_trials.sweep_trial_ship(trial=self.trial, worker=self.worker, lines=lines, metrics=metrics)


def outputs_result(prepared: Prepared) -> dict[str, dict]:
    """Store a succeeded trial's outputs; what its result says of them (sweep_trials.result_outputs)."""
    result = {}
    for name, (path, kind) in prepared.outputs.items():
        manifest = artifacts.store_files(path, kind)
        sizes = {"sha256": manifest.sha256, "size": manifest.size, "file_count": manifest.file_count}
        result[name] = {**sizes, "kind": kind}
    return result


def trial_run(trial_id: int) -> str:
    """Claim and run the trial; returns what happened, for the RQ job's result."""
    trial = SweepTrial.objects.filter(pk=trial_id).first()
    if trial is None:
        return "no such trial (deleted, or a job from another database)"
    if trial.state != TrialState.QUEUED or not sweep_trials.sweep_trial_claim(
        trial=trial, worker=worker_.worker_name()
    ):
        return "not run: claimed by another worker, or its sweep ended"
    step_run = StepRun.objects.select_related("run__version").get(pk=trial.step_run_id)
    version = step_run.run.version
    pipeline = version_spec(version)
    step = pipeline.jobs[step_run.name]
    assert step.sweep is not None
    target = ComputeTarget.objects.filter(queue=step_run.queue).first()
    result: dict = {}
    # The attempt that claimed the trial, whatever the step run became since.
    step_run.attempt = trial.attempt
    with contextlib.ExitStack() as held:
        try:
            prepared, tag = executor.prepare_trial(
                step_run,
                pipeline,
                step,
                version_file_map(version),
                number=trial.number,
                params=trial.params,
                held=held,
                target=target,
            )
        except TrialSetupError as exc:
            sweep_trials.sweep_trial_hand_in(trial=trial, worker=trial.worker, result={"setup_error": str(exc)})
            return f"could not start: {exc}"
        attempt = RemoteTrialAttempt(
            step_run, prepared, trial=trial, timeout_s=step.sweep.limits.trial_timeout_s, tag=tag
        )
        try:
            result["returncode"] = attempt.run()
            if result["returncode"] == 0 and not attempt.stop_reason:
                result["outputs"] = outputs_result(prepared)
        except artifacts.ArtifactError as exc:
            result["error"] = f"could not store its outputs: {exc}"
        except Exception as exc:
            log.exception("trial %s of %s failed in the worker", trial.number, step_run)
            attempt.kill_strays()
            result["error"] = str(exc)
        result["stop_reason"] = attempt.stop_reason
        attempt.ship()
        handed = sweep_trials.sweep_trial_hand_in(trial=trial, worker=trial.worker, result=result)
    shutil.rmtree(executor.trial_workdir(step_run, trial.number), ignore_errors=True)
    if not handed:
        return "ended after its sweep took it back"
    return f"exit code {result.get('returncode')}" + (f": {attempt.stop_reason}" if attempt.stop_reason else "")
