"""Runs executed end to end: real RQ worker processes, real subprocess steps, a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines_ui.models import Team
from pipelines_ui.services import pipeline_import
from runs import services
from runs.models import Run, RunState, StepRun, StepState
from tests.integration.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration

DIAMOND = """
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: diamond
jobs:
  a:
    type: command
    command: python -c "import sys; open(sys.argv[1] + '/value.txt', 'w').write('from-a')" ${{outputs.out}}
    outputs:
      out: {type: uri_folder}
  b:
    type: command
    command: >-
      python -c "import sys, time; time.sleep(1.5); v = open(sys.argv[1] + '/value.txt').read();
      open(sys.argv[2] + '/value.txt', 'w').write('b:' + v)" ${{inputs.x}} ${{outputs.out}}
    inputs:
      x: ${{parent.jobs.a.outputs.out}}
    outputs:
      out: {type: uri_folder}
  c:
    type: command
    command: >-
      python -c "import sys, time; time.sleep(1.5); v = open(sys.argv[1] + '/value.txt').read();
      open(sys.argv[2] + '/value.txt', 'w').write('c:' + v)" ${{inputs.x}} ${{outputs.out}}
    inputs:
      x: ${{parent.jobs.a.outputs.out}}
    outputs:
      out: {type: uri_folder}
  d:
    type: command
    command: >-
      python -c "import sys; print(open(sys.argv[1] + '/value.txt').read(), open(sys.argv[2] + '/value.txt').read())"
      ${{inputs.left}} ${{inputs.right}}
    inputs:
      left: ${{parent.jobs.b.outputs.out}}
      right: ${{parent.jobs.c.outputs.out}}
"""


def import_yaml(tmp_path: Path, text: str, user, team: Team, name: str = "p"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "pipeline.yml").write_text(textwrap.dedent(text))
    return pipeline_import(team=team, path=folder / "pipeline.yml", user=user, name=name)


def wait_run(run: Run, timeout: float = 60) -> Run:
    def finished():
        run.refresh_from_db()
        return run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED)

    states = lambda: {s.name: (s.state, s.reason) for s in run.steps.all()}  # noqa: E731
    wait_for(finished, timeout=timeout, message=f"run #{run.pk} to end", details=states)
    return run


def steps_of(run: Run) -> dict[str, StepRun]:
    return {s.name: s for s in run.steps.all()}


def log_text(step_run: StepRun) -> str:
    return "\n".join(chunk.text for chunk in step_run.log_chunks.all())


def test_diamond_runs_b_and_c_in_parallel_on_two_workers(workers, alice, team, tmp_path):
    workers.start(2)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    run = wait_run(services.run_create(version=version, user=alice))

    assert run.state == RunState.SUCCEEDED, workers.logs()
    steps = steps_of(run)
    assert {s.state for s in steps.values()} == {StepState.SUCCEEDED}
    b, c = steps["b"], steps["c"]
    # B and C overlap in time: each started before the other finished.
    assert b.started_at < c.finished_at and c.started_at < b.finished_at
    assert b.worker != c.worker
    # D saw exactly the files A wrote, through B and C.
    assert "b:from-a c:from-a" in log_text(steps["d"])


def test_failing_step_skips_downstream_and_fails_the_run(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(
        tmp_path,
        """
        type: pipeline
        jobs:
          first:
            type: command
            command: echo about to fail && exit 3
            outputs:
              out: {type: uri_folder}
          second:
            type: command
            command: echo never
            inputs:
              x: ${{parent.jobs.first.outputs.out}}
          other:
            type: command
            command: sleep 2
        """,
        alice,
        team,
    )
    run = wait_run(services.run_create(version=version, user=alice))
    steps = steps_of(run)
    assert run.state == RunState.FAILED
    assert steps["first"].state == StepState.FAILED
    assert steps["first"].exit_code == 3
    assert "about to fail" in log_text(steps["first"])
    assert steps["second"].state == StepState.SKIPPED
    # Without continue_on_step_failure, the independent branch is stopped as well.
    assert steps["other"].state in (StepState.CANCELED, StepState.SKIPPED, StepState.SUCCEEDED)
    assert "first" in run.reason


def test_continue_on_step_failure_lets_independent_branches_finish(workers, alice, team, tmp_path):
    workers.start(2)
    version = import_yaml(
        tmp_path,
        """
        type: pipeline
        settings:
          continue_on_step_failure: true
        jobs:
          broken:
            type: command
            command: exit 1
            outputs:
              out: {type: uri_folder}
          after_broken:
            type: command
            command: echo never
            inputs:
              x: ${{parent.jobs.broken.outputs.out}}
          slow:
            type: command
            command: sleep 1 && echo slow done
            outputs:
              out: {type: uri_folder}
          after_slow:
            type: command
            command: echo after slow
            inputs:
              x: ${{parent.jobs.slow.outputs.out}}
        """,
        alice,
        team,
    )
    run = wait_run(services.run_create(version=version, user=alice))
    steps = steps_of(run)
    assert run.state == RunState.FAILED
    assert steps["broken"].state == StepState.FAILED
    assert steps["after_broken"].state == StepState.SKIPPED
    assert steps["slow"].state == StepState.SUCCEEDED
    assert steps["after_slow"].state == StepState.SUCCEEDED


def _pids_alive(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return out.split()


def test_cancel_stops_a_long_step_and_its_process_tree(workers, alice, team, tmp_path):
    workers.start(1)
    marker = f"stepwise-cancel-{os.getpid()}-{time.monotonic_ns()}"
    version = import_yaml(
        tmp_path,
        """
        type: pipeline
        jobs:
          long:
            type: command
            command: bash -c 'sleep 600; echo MARKER' & sleep 600; echo MARKER
            outputs:
              out: {type: uri_folder}
          later:
            type: command
            command: echo later
            inputs:
              x: ${{parent.jobs.long.outputs.out}}
        """.replace("MARKER", marker),
        alice,
        team,
    )
    run = services.run_create(version=version, user=alice)
    wait_for(lambda: steps_of(run)["long"].state == StepState.RUNNING, message="the step to start")
    wait_for(lambda: _pids_alive(marker), message="the step's processes")
    services.run_cancel(run=Run.objects.get(pk=run.pk))
    # Stopped, not waited for: both sleeps have ten minutes to go, far beyond these deadlines.
    wait_for(lambda: not _pids_alive(marker), timeout=60, message="the process tree to stop")
    run = wait_run(run, timeout=60)
    assert run.state == RunState.CANCELED
    steps = steps_of(run)
    assert steps["long"].state == StepState.CANCELED
    assert steps["later"].state in (StepState.CANCELED, StepState.SKIPPED)


def test_unchanged_rerun_reuses_every_step(workers, alice, team, tmp_path):
    workers.start(2)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    first = wait_run(services.run_create(version=version, user=alice))
    assert first.state == RunState.SUCCEEDED
    second = wait_run(services.run_create(version=version, user=alice))
    assert second.state == RunState.SUCCEEDED
    steps = steps_of(second)
    assert {s.state for s in steps.values()} == {StepState.REUSED}
    assert all(s.reused_from.run_id == first.pk for s in steps.values())


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "pipelines", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_run_wait_json_and_exit_codes(workers, alice, team, tmp_path):
    workers.start(2)
    alice.is_superuser = True
    alice.save()
    env = workers.env()
    good = tmp_path / "good"
    good.mkdir()
    (good / "pipeline.yml").write_text(textwrap.dedent(DIAMOND))

    result = cli("run", str(good / "pipeline.yml"), "--wait", "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded"
    assert set(summary["steps"]) == {"a", "b", "c", "d"}
    a = summary["steps"]["a"]
    assert a["state"] == "succeeded" and a["attempts"] == 1 and a["reused_from"] is None
    assert Path(a["outputs"]["out"], "value.txt").read_text() == "from-a"
    assert "d: succeeded" in result.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pipeline.yml").write_text("type: pipeline\njobs:\n  x:\n    type: command\n    command: exit 7\n")
    result = cli("run", str(bad / "pipeline.yml"), "--wait", "--json", env=env)
    assert result.returncode == 1
    assert json.loads(result.stdout)["steps"]["x"]["state"] == "failed"

    invalid = tmp_path / "invalid"
    invalid.mkdir()
    (invalid / "pipeline.yml").write_text("type: pipeline\njobs:\n  x:\n    type: sweep\n")
    result = cli("run", str(invalid / "pipeline.yml"), "--wait", env=env)
    assert result.returncode == 2
    assert "pipeline.yml" in result.stderr and "x" in result.stderr


@pytest.mark.parametrize("example", sorted(p.parent.name for p in (ROOT / "examples").glob("*/pipeline.yml")))
def test_every_example_runs_to_success_through_the_cli(workers, alice, team, example):
    from runs.models import Metric

    workers.start(2)
    alice.is_superuser = True
    alice.save()
    result = cli("run", str(ROOT / "examples" / example / "pipeline.yml"), "--wait", "--json", env=workers.env())
    assert result.returncode == 0, result.stderr + workers.logs()
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded"
    if example == "sklearn-iris":
        evaluate = StepRun.objects.get(run_id=summary["run"], name="evaluate")
        assert "accuracy: 0.9" in log_text(evaluate)
        accuracy = Metric.objects.get(step_run=evaluate, name="accuracy")
        assert 0.9 <= accuracy.value <= 1.0
        curve = Metric.objects.filter(step_run__run_id=summary["run"], step_run__name="train", name="cv_accuracy")
        assert curve.count() >= 2
    if example == "digits-sweep":
        from runs.models import SweepTrial, TrialState

        trials = SweepTrial.objects.filter(step_run__run_id=summary["run"], step_run__name="tune")
        assert trials.count() == 12
        completed = {t.number: t.objective for t in trials if t.state == TrialState.COMPLETED}
        (best,) = trials.filter(is_best=True)
        assert best.objective == max(completed.values()) and best.objective > 0.8


def test_cli_cancel_stops_a_running_run(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(
        tmp_path, "type: pipeline\njobs:\n  wait:\n    type: command\n    command: sleep 600\n", alice, team
    )
    run = services.run_create(version=version, user=alice)
    wait_for(lambda: steps_of(run)["wait"].state == StepState.RUNNING, message="the step to start")
    result = cli("cancel", str(run.pk), env=workers.env())
    assert result.returncode == 0, result.stderr
    assert wait_run(run, timeout=10).state == RunState.CANCELED
    again = cli("cancel", str(run.pk), env=workers.env())
    assert again.returncode == 2 and "already ended" in again.stderr


def test_a_run_past_its_timeout_fails_and_stops_its_steps(workers, alice, team, tmp_path):
    from runs import reconciler

    workers.start(1)
    version = import_yaml(
        tmp_path, "type: pipeline\njobs:\n  wait:\n    type: command\n    command: sleep 600\n", alice, team
    )
    run = services.run_create(version=version, user=alice, timeout_s=1)
    wait_for(lambda: steps_of(run)["wait"].state == StepState.RUNNING, message="the step to start")

    def timed_out() -> bool:
        reconciler.tick()
        run.refresh_from_db()
        return run.state == RunState.FAILED

    wait_for(timed_out, timeout=15, interval=0.5, message="the run to time out")
    assert run.reason.startswith("timeout")
    assert steps_of(run)["wait"].state == StepState.CANCELED
