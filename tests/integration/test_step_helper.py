"""`from stepwise import log_metric` inside a sandboxed step: the same package the server and the
client import, seen read-only, and nothing of the server beside it."""

from __future__ import annotations

import uuid

import pytest

from runs import executor
from runs.models import ComputeTarget, Metric, StepRun
from runs.services import run_create
from tests.integration.test_execution import import_yaml

PIPELINE = """
type: pipeline
jobs:
  train:
    type: command
    code: ./src
    command: python train.py
"""

TRAIN = """
import importlib.util
import pathlib

import stepwise
from stepwise import log_metric, log_metrics

for epoch in range(3):
    log_metric("loss", 1.0 / (epoch + 1))
log_metrics({"accuracy": 0.9})
# The server's apps are not importable from a step; the package cannot be written.
assert importlib.util.find_spec("runs") is None, "runs is visible"
assert importlib.util.find_spec("pipelines_ui") is None, "pipelines_ui is visible"
try:
    (pathlib.Path(stepwise.__file__).parent / "planted.py").write_text("x = 1")
except OSError:
    pass
else:
    raise SystemExit("the stepwise package is writable from a step")
"""


@pytest.fixture(autouse=True)
def target(settings, tmp_path, transactional_db) -> ComputeTarget:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    ComputeTarget.objects.all().delete()
    return ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


def test_a_sandboxed_step_logs_metrics_with_the_stepwise_package(alice, team, tmp_path):
    src = tmp_path / "p" / "src"
    src.mkdir(parents=True)
    (src / "train.py").write_text(TRAIN)
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="train")

    assert executor.execute(step.pk, step.attempt) == "succeeded", step.reason

    loss = list(Metric.objects.filter(step_run=step, name="loss").order_by("id").values_list("step", "value"))
    assert loss == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert list(Metric.objects.filter(step_run=step, name="accuracy").values_list("value", flat=True)) == [0.9]
