"""RQ entry points: thin, ids in, services out."""

from __future__ import annotations

import logging

from runs import executor, queues, trial_runner

log = logging.getLogger(__name__)


def _refusal(instance: str, what: str) -> str:
    """Why this worker leaves a job alone, or '' to run it.

    Ids repeat across databases: a job of another install (its queues are named apart, so only a
    misrouted one gets here) must not run this install's step or trial of the same id. It is left
    alone, database untouched: its owner's reconciler (or sweep driver) does without it.
    """
    own = queues.instance_id()
    if instance == own:
        return ""
    log.warning("refused job for %s of install %r: this worker serves install %r", what, instance, own)
    return f"refused: a job of install {instance!r}, not of this worker's install {own!r}"


def execute_step(step_run_id: int, attempt: int, instance: str) -> str:
    return _refusal(instance, f"step run {step_run_id} attempt {attempt}") or executor.execute_chain(
        step_run_id, attempt
    )


def run_sweep_trial(trial_id: int, instance: str) -> str:
    return _refusal(instance, f"sweep trial {trial_id}") or trial_runner.trial_run(trial_id)
