"""Which target a step's `compute:` lands on when a run is created."""

from __future__ import annotations

import pytest

from runs.models import ComputeTarget, StepRun
from runs.queues import resolve_target
from runs.services import RunInputError

from .conftest import default_target, make_pipeline, make_run

PIPELINE = """
type: pipeline
inputs:
  target: {type: string, default: gpu}
jobs:
  fixed:
    command: echo fixed
    compute: azureml:cpu-cluster
  chosen:
    command: echo chosen
    compute: ${{parent.inputs.target}}
  managed:
    command: echo managed
    compute: serverless
"""


@pytest.fixture
def gpu(db) -> ComputeTarget:
    return ComputeTarget.objects.create(name="gpu", aliases=["gpu-cluster"], queue="stepwise-gpu")


def _queues(run) -> dict[str, str]:
    return dict(StepRun.objects.filter(run=run).values_list("name", "queue"))


def test_names_aliases_and_serverless(gpu):
    local = default_target()
    assert resolve_target("azureml:gpu-cluster") == gpu
    assert resolve_target("gpu") == gpu
    assert resolve_target("serverless") == local
    assert resolve_target("azureml:serverless") == local
    assert resolve_target("") == local
    assert resolve_target("tpu-pod") is None


def test_unknown_names_run_on_the_default_target_when_configured(gpu, settings):
    settings.STEPWISE_UNKNOWN_COMPUTE = "default"
    assert resolve_target("azureml:tpu-pod") == default_target()
    assert resolve_target("gpu-cluster") == gpu


def test_a_pipeline_input_chooses_the_target_per_run(gpu, alice, team):
    pipeline = make_pipeline(team, alice, yaml_text=PIPELINE)
    assert _queues(make_run(pipeline, alice)) == {
        "fixed": "stepwise-local",
        "chosen": "stepwise-gpu",
        "managed": "stepwise-local",
    }
    assert _queues(make_run(pipeline, alice, target="azureml:cpu-cluster"))["chosen"] == "stepwise-local"


def test_a_run_with_an_unknown_chosen_target_is_refused(gpu, alice, team):
    pipeline = make_pipeline(team, alice, yaml_text=PIPELINE)
    with pytest.raises(RunInputError) as info:
        make_run(pipeline, alice, target="tpu-pod")
    assert info.value.errors == {"chosen": "unknown compute target 'tpu-pod'"}
