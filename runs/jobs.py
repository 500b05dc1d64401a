"""RQ entry points: thin, ids in, services out."""

from __future__ import annotations

import logging

from runs import executor, queues

log = logging.getLogger(__name__)


def execute_step(step_run_id: int, attempt: int, instance: str) -> str:
    # Step run ids repeat across databases: a job of another install (its queues are named apart,
    # so only a misrouted one gets here) must not run this install's step of the same id. It is
    # left alone, database untouched: its owner's reconciler sees it gone and enqueues it again.
    own = queues.instance_id()
    if instance != own:
        log.warning(
            "refused job for step run %s attempt %s of install %r: this worker serves install %r",
            step_run_id,
            attempt,
            instance,
            own,
        )
        return f"refused: a job of install {instance!r}, not of this worker's install {own!r}"
    return executor.execute_chain(step_run_id, attempt)
