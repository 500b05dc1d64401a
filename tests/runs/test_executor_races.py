"""Late events change nothing: a step that completes after its run was canceled, in-process."""

from __future__ import annotations

import uuid

import pytest

from runs import artifacts, executor
from runs.models import Artifact, ComputeTarget, RunState, StepOutput, StepRun, StepState, Transition
from runs.services import run_cancel, run_create
from tests.integration.test_execution import import_yaml

PIPELINE = """
type: pipeline
jobs:
  make:
    type: command
    command: echo done > ${{outputs.out}}/data.txt
    outputs:
      out: {type: uri_folder}
  after:
    type: command
    command: echo after
    inputs:
      x: ${{parent.jobs.make.outputs.out}}
"""


@pytest.fixture(autouse=True)
def store(settings, tmp_path, transactional_db):
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    # No worker serves this queue: the test runs the steps itself.
    ComputeTarget.objects.all().delete()
    ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


def test_a_completion_after_a_cancel_registers_nothing_and_advances_nothing(
    transactional_db, alice, team, tmp_path, monkeypatch
):
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")
    store_files = artifacts.store_files

    def cancel_while_storing(path, kind):
        # The step's process has exited 0; the cancel lands while its outputs are stored.
        run_cancel(run=run)
        return store_files(path, kind)

    monkeypatch.setattr(artifacts, "store_files", cancel_while_storing)

    assert executor.execute(step.pk, step.attempt) == "finished after being canceled or superseded"

    run.refresh_from_db()
    step.refresh_from_db()
    assert run.state == RunState.CANCELED
    assert step.state == StepState.CANCELED
    assert not StepOutput.objects.filter(step_run__run=run).exists()
    assert not Artifact.objects.exists()
    assert not Transition.objects.filter(step_run=step, new=StepState.SUCCEEDED).exists()
    after = StepRun.objects.get(run=run, name="after")
    assert after.state == StepState.CANCELED
    assert not Transition.objects.filter(step_run=after, new=StepState.QUEUED).exists()


def test_a_second_delivery_of_a_finished_attempt_changes_nothing(transactional_db, alice, team, tmp_path):
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="make")
    assert executor.execute(step.pk, step.attempt) == "succeeded"
    transitions = list(Transition.objects.values_list("pk", flat=True))

    assert executor.execute(step.pk, step.attempt).startswith("stale delivery")
    assert list(Transition.objects.values_list("pk", flat=True)) == transitions
    assert StepOutput.objects.filter(step_run=step).count() == 1
