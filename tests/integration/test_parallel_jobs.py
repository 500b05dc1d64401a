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


BOUND = Path(__file__).resolve().parents[1] / "azureml_corpus" / "parallel_bound_settings"


def test_run_settings_bound_to_inputs_take_the_runs_values_and_rerun_when_they_change(workers, alice, team):
    workers.start(1)
    version = pipeline_import(team=team, path=BOUND / "pipeline.yml", user=alice, name="bound")
    first = wait_run(run_create(version=version, user=alice), timeout=120)
    assert first.state == RunState.SUCCEEDED, {s.name: log_text(s) for s in steps_of(first).values()}
    assert "parallel job: 2 mini-batches, 2 worker processes" in log_text(steps_of(first)["count"])

    # As `pipelines run --set batch_size=2 --set processes=1`: a changed setting reruns the step.
    second = wait_run(run_create(version=version, user=alice, inputs={"batch_size": "2", "processes": 1}), timeout=120)
    count = steps_of(second)["count"]
    assert second.state == RunState.SUCCEEDED, log_text(count)
    assert count.state == StepState.SUCCEEDED and count.reused_from_id is None
    assert "parallel job: 3 mini-batches, 1 worker processes" in log_text(count)

    # The same values again: reused.
    third = wait_run(run_create(version=version, user=alice, inputs={"batch_size": "2", "processes": 1}), timeout=120)
    assert steps_of(third)["count"].state == StepState.REUSED


def test_a_bound_value_the_setting_refuses_fails_the_step_naming_it(workers, alice, team):
    workers.start(1)
    version = pipeline_import(team=team, path=BOUND / "pipeline.yml", user=alice, name="bound_bad")
    run = wait_run(run_create(version=version, user=alice, inputs={"batch_size": "lots"}), timeout=120)

    steps = steps_of(run)
    assert run.state == RunState.FAILED
    assert steps["count"].state == StepState.FAILED
    assert "parallel run setting mini_batch_size = 'lots'" in steps["count"].reason
    assert "(pipeline input 'batch_size')" in steps["count"].reason
    assert steps["total"].state == StepState.SKIPPED
