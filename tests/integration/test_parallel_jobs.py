"""A `type: parallel` job run end to end: a real worker, the sandboxed step, the driver's own
worker processes, the output stored as the step's artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines_ui.services import pipeline_import
from runs.artifacts import artifact_path
from runs.models import Metric, RunState, StepOutput, StepState
from runs.services import run_create
from tests.integration.test_execution import log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "parallel"


def import_corpus(tmp_path: Path, team, user, *, mini_batch_error_threshold: int, name: str):
    """The corpus sample (20 files, mini-batches of 1, 2 processes) with the given threshold."""
    folder = tmp_path / name
    shutil.copytree(CORPUS, folder)
    text = (folder / "pipeline.yml").read_text()
    changed = text.replace("mini_batch_error_threshold: 1", f"mini_batch_error_threshold: {mini_batch_error_threshold}")
    assert changed != text or mini_batch_error_threshold == 1
    (folder / "pipeline.yml").write_text(changed)
    return pipeline_import(team=team, path=folder / "pipeline.yml", user=user, name=name)


def test_one_failed_mini_batch_under_its_threshold_keeps_the_other_rows(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_corpus(tmp_path, team, alice, mini_batch_error_threshold=1, name="tolerant")
    run = wait_run(run_create(version=version, user=alice, inputs={"fail_on": "reading_07.txt"}), timeout=120)

    score = steps_of(run)["score"]
    assert run.state == RunState.SUCCEEDED, (score.reason, log_text(score), workers.logs())
    assert score.state == StepState.SUCCEEDED
    output = StepOutput.objects.select_related("artifact").get(step_run=score, name="scores")
    lines = (artifact_path(output.artifact) / "parallel_run_step.txt").read_text().splitlines()
    # 19 mini-batches of one file each, in mini-batch order; reading_07.txt failed.
    expected = [f"reading_{i:02}.txt {(i + 3 * i) * 2}" for i in range(1, 21) if i != 7]
    assert lines == expected
    log = log_text(score)
    assert "mini-batch 7/20 (reading_07.txt): ValueError: cannot score reading_07.txt: mini-batch failed" in log
    assert "19 of 20 mini-batches succeeded, 1 failed" in log
    done = Metric.objects.filter(step_run=score, name="minibatches_done").values_list("value", flat=True)
    assert sorted(done) == [float(n) for n in range(1, 21)]


def test_the_same_job_with_threshold_zero_fails_naming_the_mini_batch(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_corpus(tmp_path, team, alice, mini_batch_error_threshold=0, name="strict")
    run = wait_run(run_create(version=version, user=alice, inputs={"fail_on": "reading_07.txt"}), timeout=120)

    score = steps_of(run)["score"]
    assert run.state == RunState.FAILED
    assert score.state == StepState.FAILED and score.exit_code == 1
    assert (
        "parallel job failed: 1 failed mini-batch, more than mini_batch_error_threshold 0: "
        "mini-batch 7/20 (reading_07.txt): ValueError: cannot score reading_07.txt"
    ) in log_text(score)
    assert not StepOutput.objects.filter(step_run=score).exists()
