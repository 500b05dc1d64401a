"""A step script written for Azure ML, calling mlflow unchanged, logs metrics and parameters that
Stepwise stores (with the shim on its path, as no mlflow is installed) and charts."""

from __future__ import annotations

import uuid

import pytest

from runs import compare, executor
from runs.models import ComputeTarget, Metric, Param, StepRun
from runs.services import run_create
from tests.integration.test_execution import import_yaml

PIPELINE = """
type: pipeline
jobs:
  train:
    type: command
    code: ./src
    command: python train.py --lr 0.05
"""

# As an Azure ML example writes it: nothing here knows about Stepwise.
TRAIN = """
import argparse

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()

mlflow.set_experiment("digits")
with mlflow.start_run():
    mlflow.autolog()
    mlflow.log_param("lr", args.lr)
    mlflow.log_params({"optimizer": "sgd", "layers": 3})
    for epoch in range(5):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    mlflow.log_metrics({"accuracy": 0.93, "f1": 0.9})
    mlflow.log_metric("accuracy", 0.95)
"""


@pytest.fixture(autouse=True)
def target(settings, tmp_path, transactional_db) -> ComputeTarget:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    # No worker serves this queue: the test runs the step itself.
    ComputeTarget.objects.all().delete()
    return ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


def test_mlflow_calls_in_an_unchanged_script_are_stored(alice, team, tmp_path):
    src = tmp_path / "p" / "src"
    src.mkdir(parents=True)
    (src / "train.py").write_text(TRAIN)
    run = run_create(version=import_yaml(tmp_path, PIPELINE, alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="train")

    assert executor.execute(step.pk, step.attempt) == "succeeded"

    loss = list(Metric.objects.filter(step_run=step, name="loss").order_by("id").values_list("step", "value"))
    assert loss == [(e, 1.0 / (e + 1)) for e in range(5)]
    # log_metrics without a step, then log_metric again: the next index, as mlflow counts.
    accuracy = list(Metric.objects.filter(step_run=step, name="accuracy").order_by("id").values_list("step", "value"))
    assert accuracy == [(0, 0.93), (1, 0.95)]
    assert dict(Param.objects.filter(step_run=step).values_list("name", "value")) == {
        "lr": "0.05",
        "optimizer": "sgd",
        "layers": "3",
    }
    charts = {c["name"]: c for c in compare.run_charts(run)}
    assert set(charts) == {"accuracy", "f1", "loss"}
    assert charts["loss"]["lines"][0]["key"] == "train"
    assert compare.final_metrics([run.pk])[run.pk]["accuracy"] == 0.95
