"""RQ entry points: thin, ids in, services out."""

from __future__ import annotations

from runs import executor, orchestrator
from runs.models import StepRun


def execute_step(step_run_id: int, attempt: int) -> str:
    outcome = executor.execute(step_run_id, attempt)
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is not None:
        orchestrator.run_advance(run_id)
    return outcome
