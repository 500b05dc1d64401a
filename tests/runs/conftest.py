"""Fixtures for the run pages: a small pipeline of alice's team, runs of it, logs and outputs."""

from __future__ import annotations

import pytest

from pipelines_ui.models import Pipeline, PipelineVersion
from pipelines_ui.services import pipeline_create
from runs.models import ComputeTarget, Run, StepRun
from stepwise.spec import parse_text

# prep -> train -> report, with one input of every literal type.
PIPELINE_YAML = """
type: pipeline
display_name: demo
inputs:
  epochs: {type: integer, default: 3, description: Training epochs}
  rate: {type: number, default: 0.5}
  verbose: {type: boolean, default: false}
  mode: {type: string, enum: [fast, full], default: fast}
  note: {type: string, optional: true}
jobs:
  prep:
    type: command
    command: >-
      python -c "import sys; print('preparing', sys.argv[1]);
      open(sys.argv[2] + '/rows.csv', 'w').write('a,b\\n1,2\\n')"
      ${{inputs.mode}} ${{outputs.data}}
    inputs:
      mode: ${{parent.inputs.mode}}
    outputs:
      data: {type: uri_folder}
  train:
    type: command
    command: >-
      python -c "import sys; print('training for', sys.argv[1], 'epochs'); open(sys.argv[3], 'w').write('model')"
      ${{inputs.epochs}} ${{inputs.data}} ${{outputs.model}}
    inputs:
      epochs: ${{parent.inputs.epochs}}
      data: ${{parent.jobs.prep.outputs.data}}
    outputs:
      model: {type: uri_file}
  report:
    type: command
    command: python -c "import sys; print('report on', sys.argv[1])" ${{inputs.model}}
    inputs:
      model: ${{parent.jobs.train.outputs.model}}
"""


def default_target() -> ComputeTarget:
    # Migration 0002 creates it, but a transactional test's flush removes it again.
    target, _ = ComputeTarget.objects.get_or_create(
        name="local", defaults={"aliases": ["cpu-cluster"], "queue": "stepwise-local", "is_default": True}
    )
    return target


def make_pipeline(team, user, *, name: str = "demo", yaml_text: str = PIPELINE_YAML) -> Pipeline:
    default_target()
    spec, _warnings = parse_text(yaml_text)
    return pipeline_create(team=team, name=name, user=user, spec=spec)


def make_run(pipeline: Pipeline, user, **inputs) -> Run:
    """A run whose steps exist but never started (TestCase runs no on_commit callbacks)."""
    from runs.services import run_create

    version: PipelineVersion = pipeline.latest_version
    return run_create(version=version, user=user, inputs=inputs)


def set_step(run: Run, name: str, **fields) -> StepRun:
    # Test setup only: the application moves states through runs.transitions.
    StepRun.objects.filter(run=run, name=name).update(**fields)
    return StepRun.objects.get(run=run, name=name)


@pytest.fixture
def pipeline(alice, team) -> Pipeline:
    return make_pipeline(team, alice)


@pytest.fixture
def run(pipeline, alice) -> Run:
    return make_run(pipeline, alice)


@pytest.fixture(autouse=True)
def artifact_store(settings, tmp_path):
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
