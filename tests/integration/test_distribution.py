"""A distributed step on a real worker: the Azure ML sample's two PyTorch ranks each write what
they were given, and the step's output holds both."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui.services import pipeline_import
from runs import artifacts, services
from runs.models import RunState, StepOutput
from tests.integration.test_execution import log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus"


def test_the_pytorch_sample_runs_two_ranks_on_a_worker(workers, alice, team):
    version = pipeline_import(
        team=team, path=CORPUS / "distributed_pytorch" / "pipeline.yml", user=alice, name="distributed"
    )
    workers.start(1)
    run = wait_run(services.run_create(version=version, user=alice))
    step = steps_of(run)["train"]
    assert run.state == RunState.SUCCEEDED, (step.reason, log_text(step), workers.logs())

    folder = artifacts.artifact_path(StepOutput.objects.get(step_run=step, name="ranks").artifact, "ranks")
    seen = {}
    for path in folder.iterdir():
        values = dict(line.split("=", 1) for line in path.read_text().splitlines())
        seen[path.name] = values
    assert sorted(seen) == ["rank-0.txt", "rank-1.txt"]
    assert [(v["RANK"], v["WORLD_SIZE"], v["LOCAL_RANK"]) for _, v in sorted(seen.items())] == [
        ("0", "2", "0"),
        ("1", "2", "1"),
    ]
    assert {v["MASTER_ADDR"] for v in seen.values()} == {"127.0.0.1"}
    assert len({v["MASTER_PORT"] for v in seen.values()}) == 1
    log = log_text(step)
    assert "[rank 0] rank 0 of 2 done" in log and "[rank 1] rank 1 of 2 done" in log
