"""RQ entry points: thin, ids in, services out."""

from __future__ import annotations

from runs import executor


def execute_step(step_run_id: int, attempt: int) -> str:
    return executor.execute_chain(step_run_id, attempt)
