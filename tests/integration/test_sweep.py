"""Sweep steps end to end: a real worker runs the trials, 3 at once, and keeps the best one's outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipelines_ui.services import pipeline_import
from runs import artifacts, services
from runs.models import Run, RunState, StepOutput, StepState, SweepTrial, TrialState
from tests.integration.conftest import pids_matching, wait_for
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "sweep"

GRID = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time, json; from stepwise import log_metric;
        x, shape = int(sys.argv[1]), sys.argv[2];
        score = -(x - 3) ** 2 - {'flat': 1.0, 'round': 0.0, 'sharp': 2.0}[shape];
        [(log_metric('score', score * (i + 1) / 3, step=i), time.sleep(0.2)) for i in range(3)];
        json.dump({'x': x, 'shape': shape}, open(sys.argv[3] + '/best.json', 'w'))"
        ${{inputs.x}} ${{inputs.shape}} ${{outputs.model}}
      inputs:
        x: {type: integer}
        shape: {type: string}
      outputs:
        model: {type: uri_folder}
    search_space:
      x: {type: choice, values: [1, 2, 3, 4]}
      shape: {type: choice, values: [flat, round, sharp]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 12, max_concurrent_trials: 3, trial_timeout: 60}
    early_termination:
      type: truncation_selection
      truncation_percentage: 20
      evaluation_interval: 1
      delay_evaluation: 1
"""


def corpus_score(params: dict) -> float:
    # What tests/azureml_corpus/sweep/src/train.py computes from its parameters.
    lr, width, dropout = params["learning_rate"], params["width"], params["dropout"]
    return 1.0 - abs(math.log10(lr) + 1) / 3 - abs(width - 32) / 64 - abs(dropout - 0.2)


def grid_score(params: dict) -> float:
    return -((params["x"] - 3) ** 2) - {"flat": 1.0, "round": 0.0, "sharp": 2.0}[params["shape"]]


def max_overlap(trials: list[SweepTrial]) -> int:
    """The most trials running at one moment, from the rows' own start and end times."""
    events = sorted([(t.started_at, 1) for t in trials] + [(t.finished_at, -1) for t in trials])
    running = most = 0
    for _moment, change in events:
        running += change
        most = max(most, running)
    return most


def output_file(step_run, name: str, filename: str) -> dict:
    output = StepOutput.objects.get(step_run=step_run, name=name)
    return json.loads((artifacts.artifact_path(output.artifact, name) / filename).read_text())


def check_sweep(step_run, score) -> SweepTrial:
    trials = list(SweepTrial.objects.filter(step_run=step_run).order_by("number"))
    assert [t.number for t in trials] == list(range(1, 13))
    # No trial fails: a trial ending must not take its siblings with it.
    assert all(t.state in (TrialState.COMPLETED, TrialState.EARLY_TERMINATED) for t in trials), [
        (t.number, t.state, t.reason) for t in trials
    ]
    assert max_overlap(trials) <= 3
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    assert completed, [(t.number, t.state, t.reason) for t in trials]
    for trial in completed:
        # The metric the trial logged last is the score its parameters give.
        assert trial.objective == pytest.approx(score(trial.params))
        assert len(trial.metrics["score"]) == 3
    for trial in trials:
        if trial.state == TrialState.EARLY_TERMINATED:
            assert trial.objective is None and trial.reason
    (best,) = [t for t in trials if t.is_best]
    assert best.state == TrialState.COMPLETED
    assert best.objective == max(t.objective for t in completed)
    return best


def test_random_sweep_of_the_corpus_sample_keeps_the_best_trials_model(workers, alice, team):
    workers.start()
    version = pipeline_import(team=team, path=CORPUS / "pipeline.yml", user=alice, name="sweep")
    run = wait_run(services.run_create(version=version, user=alice), timeout=120)
    steps = steps_of(run)
    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps.items()}
    sweep = steps["sweep_step"]
    best = check_sweep(sweep, corpus_score)
    for trial in SweepTrial.objects.filter(step_run=sweep):
        assert trial.params["width"] in (8, 16, 32, 64)
        assert math.exp(-6.9) <= trial.params["learning_rate"] <= math.exp(-0.7)
        dropout = trial.params["dropout"]
        assert 0.0 <= dropout <= 0.5 and dropout == pytest.approx(round(dropout * 10) / 10)
    # The best trial's output is the step's output, and what the next step read.
    model = output_file(sweep, "model", "model.json")
    assert model == pytest.approx(best.params)
    assert f"'width': {best.params['width']}" in log_text(steps["report"])
    assert {p.name: p.value for p in sweep.params.all()} == {k: str(v) for k, v in best.params.items()}
    # Each finished trial's objective is on the sweep step's chart, at its trial number.
    charted = {m.step: m.value for m in sweep.metrics.filter(name="score")}
    assert charted[best.number] == pytest.approx(best.objective)
    assert "[sweep] best: trial" in log_text(sweep)


def test_grid_sweep_tries_every_combination_and_picks_the_best(workers, alice, team, tmp_path):
    workers.start()
    run = wait_run(services.run_create(version=import_yaml(tmp_path, GRID, alice, team), user=alice), timeout=120)
    search = steps_of(run)["search"]
    assert run.state == RunState.SUCCEEDED and search.state == StepState.SUCCEEDED, (search.state, search.reason)
    trials = list(SweepTrial.objects.filter(step_run=search))
    assert sorted((t.params["x"], t.params["shape"]) for t in trials) == sorted(
        (x, s) for x in (1, 2, 3, 4) for s in ("flat", "round", "sharp")
    )
    best = check_sweep(search, grid_score)
    assert best.params == {"x": 3, "shape": "round"}
    assert output_file(search, "model", "best.json") == {"x": 3, "shape": "round"}


BAYESIAN = (
    GRID.replace("sampling_algorithm: grid", "sampling_algorithm: bayesian")
    .replace("x: {type: choice, values: [1, 2, 3, 4]}", "x: {type: quniform, min_value: 0, max_value: 6, q: 1}")
    .split("    early_termination:")[0]
)


def test_bayesian_sweep_runs_its_trials_and_keeps_the_best(workers, alice, team, tmp_path):
    workers.start()
    run = wait_run(services.run_create(version=import_yaml(tmp_path, BAYESIAN, alice, team), user=alice), timeout=180)
    search = steps_of(run)["search"]
    assert run.state == RunState.SUCCEEDED and search.state == StepState.SUCCEEDED, (search.state, search.reason)
    trials = list(SweepTrial.objects.filter(step_run=search))
    assert all(t.params["x"] in range(7) and t.params["shape"] in ("flat", "round", "sharp") for t in trials)
    best = check_sweep(search, grid_score)
    assert output_file(search, "model", "best.json") == best.params
    assert "bayesian sampling" in log_text(search)


def test_grid_sweep_of_the_digits_example_keeps_the_most_accurate_model(workers, alice, team, tmp_path):
    import pickle
    import shutil

    folder = tmp_path / "digits"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "digits-sweep", folder)
    text = (folder / "pipeline.yml").read_text()
    text = text.replace("type: random\n      seed: 42", "type: grid")
    text = text.replace(
        "type: loguniform\n        min_value: -11.5\n        max_value: -2.3",
        "type: choice\n        values: [0.00001, 0.0001, 0.001, 0.01]",
    )
    (folder / "pipeline.yml").write_text(text)
    workers.start()
    version = pipeline_import(team=team, path=folder / "pipeline.yml", user=alice, name="digits-grid")
    run = wait_run(services.run_create(version=version, user=alice), timeout=300)
    tune = steps_of(run)["tune"]
    assert run.state == RunState.SUCCEEDED, (tune.state, tune.reason)
    trials = list(SweepTrial.objects.filter(step_run=tune))
    assert sorted((t.params["alpha"], t.params["epochs"]) for t in trials) == sorted(
        (a, e) for a in (0.00001, 0.0001, 0.001, 0.01) for e in (3, 6, 9)
    )
    assert max_overlap(trials) <= 3
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    (best,) = [t for t in trials if t.is_best]
    assert best.objective == max(t.objective for t in completed)
    # The step's output is the best trial's model, and it scores what the trial logged.
    output = StepOutput.objects.get(step_run=tune, name="model")
    model_dir = artifacts.artifact_path(output.artifact, "model")
    assert (model_dir / "accuracy.txt").read_text().strip() == f"{best.objective:.4f}"
    assert pickle.loads((model_dir / "model.pkl").read_bytes()).alpha == best.params["alpha"]


# One trial at a time, the best first: each later trial is judged against a finished one, so
# which trials stop early does not depend on timing. A trial that is not stopped sleeps long
# enough between reports to make the test slow rather than pass by luck.
EARLY = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time; from stepwise import log_metric;
        x = int(sys.argv[1]); score = -(x - 3) ** 2;
        [(log_metric('score', score * (i + 1) / 4, step=i), time.sleep(0.1 if score == 0 else 20)) for i in range(4)];
        print('done', x)" ${{inputs.x}}
      inputs:
        x: {type: integer}
    search_space:
      x: {type: choice, values: [3, 1, 5]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 3, max_concurrent_trials: 1, trial_timeout: 120}
    early_termination: {type: bandit, slack_amount: 0.5, evaluation_interval: 1, delay_evaluation: 0}
"""


def test_bandit_stops_trials_that_fall_behind_the_best(workers, alice, team, tmp_path):
    workers.start()
    run = wait_run(services.run_create(version=import_yaml(tmp_path, EARLY, alice, team), user=alice), timeout=120)
    search = steps_of(run)["search"]
    assert search.state == StepState.SUCCEEDED, search.reason
    trials = {t.params["x"]: t for t in SweepTrial.objects.filter(step_run=search)}
    assert trials[3].state == TrialState.COMPLETED and trials[3].is_best and trials[3].objective == 0
    for x in (1, 5):
        # Stopped at its first report, long before its 80 s of sleep.
        assert trials[x].state == TrialState.EARLY_TERMINATED, (trials[x].state, trials[x].reason)
        assert trials[x].reason.startswith("bandit:") and trials[x].objective is None
        assert len(trials[x].metrics["score"]) == 1
    log = log_text(search)
    assert "[trial 1] done 3" in log and "done 1" not in log and "[trial 2] stopped early: bandit" in log


def test_a_sweep_whose_trials_log_no_objective_fails_saying_so(workers, alice, team, tmp_path):
    workers.start()
    text = EARLY.replace("log_metric('score'", "log_metric('loss'").replace("else 20", "else 0.1")
    run = wait_run(services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice), timeout=120)
    search = steps_of(run)["search"]
    assert run.state == RunState.FAILED and search.state == StepState.FAILED
    assert search.reason == "no trial completed with a value of 'score'"
    assert {t.state for t in SweepTrial.objects.filter(step_run=search)} == {TrialState.FAILED}
    assert not StepOutput.objects.filter(step_run=search).exists()


SLOW = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time; from stepwise import log_metric;
        x = int(sys.argv[1]); log_metric('score', x); print('{MARKER}', x, flush=True);
        time.sleep(0.1 if x == 0 else 300)" ${{inputs.x}}
      inputs:
        x: {type: integer}
    search_space:
      x: {type: choice, values: [0, 1, 2, 3, 4, 5]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 6, max_concurrent_trials: 2, timeout: LIMIT}
"""


@pytest.mark.parametrize("count", [1, 2])
def test_canceling_a_sweep_stops_its_trials_and_starts_no_more(workers, alice, team, tmp_path, marker, count):
    # With two workers, one of the trials runs on the other worker and hears of the cancel there.
    workers.start(count)
    text = SLOW.replace("{MARKER}", marker).replace("LIMIT", "600")
    run = services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice)
    trials = SweepTrial.objects.filter(step_run__run=run)
    # Trial 1 (x=0) ends at once; trials 2 and 3 sleep.
    wait_for(lambda: trials.count() == 3 and trials.get(number=1).state != TrialState.RUNNING, message="trial 3")
    services.run_cancel(run=Run.objects.get(pk=run.pk))
    wait_run(run, timeout=60)
    assert run.state == RunState.CANCELED and steps_of(run)["search"].state == StepState.CANCELED
    # The driver hears of the cancel within a heartbeat, then stops the trials it runs.
    unended = (TrialState.QUEUED, TrialState.RUNNING)
    wait_for(lambda: not trials.filter(state__in=unended).exists(), message="the trials to end")
    states = {t.number: t.state for t in trials}
    assert states == {1: TrialState.COMPLETED, 2: TrialState.CANCELED, 3: TrialState.CANCELED}, [
        (t.number, t.reason) for t in trials
    ]
    assert trials.get(number=2).reason == "canceled: the sweep step was canceled or superseded"
    if count == 2:
        # The idle worker claims what is queued before the sweep's own may: one sleeper is its.
        search = steps_of(run)["search"]
        assert any(t.worker not in ("", search.worker) for t in trials.filter(number__in=(2, 3)))
    wait_for(lambda: not pids_matching(marker), timeout=10, message="the trials' processes to end")


def test_a_sweeps_timeout_cancels_running_trials_and_keeps_the_best_completed(workers, alice, team, tmp_path, marker):
    workers.start()
    text = SLOW.replace("{MARKER}", marker).replace("LIMIT", "3")
    run = wait_run(services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice), timeout=60)
    search = steps_of(run)["search"]
    assert run.state == RunState.SUCCEEDED, search.reason
    trials = {t.number: t for t in SweepTrial.objects.filter(step_run=search)}
    assert set(trials) == {1, 2, 3}, [(t.number, t.state, t.reason) for t in trials.values()]
    assert trials[1].state == TrialState.COMPLETED and trials[1].is_best
    for number in (2, 3):
        assert trials[number].state == TrialState.CANCELED
        assert trials[number].reason == "timeout: the sweep ran longer than 3 s"
    assert not pids_matching(marker)


# Each trial notes that it ran in a file of the test's shared folder, sleeps so that two run at
# once, and leaves x in its output; the report step reads the sweep's output, wherever it was made.
SPREAD = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time, json; from stepwise import log_metric;
        x = int(sys.argv[1]); open('{SHARED}/ran.txt', 'a').write(str(x) + chr(10));
        [(log_metric('score', -(x - 3) ** 2 * (i + 1) / 3, step=i), time.sleep(0.6)) for i in range(3)];
        json.dump({'x': x}, open(sys.argv[2] + '/best.json', 'w')); print('done', x)"
        ${{inputs.x}} ${{outputs.model}}
      inputs:
        x: {type: integer}
      outputs:
        model: {type: uri_folder}
    search_space:
      x: {type: choice, values: [0, 1, 2, 3, 4, 5]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 6, max_concurrent_trials: 2, trial_timeout: 60}
  report:
    command: cat ${{inputs.model}}/best.json
    inputs:
      model: ${{parent.jobs.search.outputs.model}}
"""


@pytest.mark.parametrize("count", [2, 1])
def test_trials_spread_over_the_workers_each_run_once_and_the_best_output_is_adopted(
    workers, alice, team, tmp_path, count
):
    workers.start(count)
    text = SPREAD.replace("{SHARED}", str(tmp_path))
    run = wait_run(services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice), timeout=120)
    steps = steps_of(run)
    search = steps["search"]
    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps.items()}
    trials = list(SweepTrial.objects.filter(step_run=search).order_by("number"))
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 6, [(t.number, t.state, t.reason) for t in trials]
    assert sorted(int(x) for x in (tmp_path / "ran.txt").read_text().split()) == [0, 1, 2, 3, 4, 5]
    assert max_overlap(trials) <= 2
    ran_on = {t.worker for t in trials}
    if count == 2:
        # The other worker took trials from the queue; the sweep's own ran those no one claimed in time.
        assert len(ran_on) == 2 and search.worker in ran_on, ran_on
    else:
        # Alone, the sweep's worker runs every trial itself once the claim delay has passed.
        assert ran_on == {search.worker}
    log = log_text(search)
    for trial in trials:
        assert trial.objective == -((trial.params["x"] - 3) ** 2) and len(trial.metrics["score"]) == 3
        # Each trial's lines reach the sweep step's log, whichever worker ran it.
        assert f"[trial {trial.number}] done {trial.params['x']}" in log
        assert f"[trial {trial.number}] running on {trial.worker}" in log
    (best,) = [t for t in trials if t.is_best]
    assert best.params == {"x": 3}
    assert output_file(search, "model", "best.json") == {"x": 3}
    assert '{"x": 3}' in log_text(steps["report"])


def on_another_worker(trials, search) -> SweepTrial | None:
    running = trials.filter(state=TrialState.RUNNING).exclude(worker=search.worker).exclude(worker="")
    return running.first()


def test_early_termination_stops_a_trial_running_on_another_worker(workers, alice, team, tmp_path):
    # One trial at a time: the idle worker takes each from the queue before the claim delay ends.
    workers.start(2)
    run = wait_run(services.run_create(version=import_yaml(tmp_path, EARLY, alice, team), user=alice), timeout=120)
    search = steps_of(run)["search"]
    assert search.state == StepState.SUCCEEDED, search.reason
    trials = {t.params["x"]: t for t in SweepTrial.objects.filter(step_run=search)}
    assert all(t.worker and t.worker != search.worker for t in trials.values()), [
        (t.number, t.worker, search.worker) for t in trials.values()
    ]
    assert trials[3].state == TrialState.COMPLETED and trials[3].is_best
    for x in (1, 5):
        # Stopped at its first report, through its row, long before its 20 s of sleep.
        assert trials[x].state == TrialState.EARLY_TERMINATED, (trials[x].state, trials[x].reason)
        assert trials[x].reason.startswith("bandit:") and len(trials[x].metrics["score"]) == 1
        assert trials[x].duration_s < 15
    assert "done 1" not in log_text(search)


LOST = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time; from stepwise import log_metric;
        x = int(sys.argv[1]); log_metric('score', -(x - 3) ** 2); print('{MARKER}', x, flush=True);
        time.sleep(300 if x == 0 else 0.1)" ${{inputs.x}}
      inputs:
        x: {type: integer}
    search_space:
      x: {type: choice, values: [0, 1, 2, 3]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 4, max_concurrent_trials: 1}
"""


def test_a_trial_whose_worker_dies_fails_as_worker_lost_and_the_sweep_goes_on(workers, alice, team, tmp_path, marker):
    workers.start(2)
    text = LOST.replace("{MARKER}", marker)
    run = services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice)
    trials = SweepTrial.objects.filter(step_run__run=run)
    search = wait_for(lambda: steps_of(run)["search"].worker and steps_of(run)["search"], message="the sweep")
    # Trial 1 (x=0) sleeps on the other worker, the idle one, which claims it at once.
    remote = wait_for(lambda: on_another_worker(trials, search), message="a trial on the other worker")
    assert remote.number == 1
    wait_for(lambda: pids_matching(marker), message="trial 1's process")
    (victim,) = [p for p in workers.procs if remote.worker.endswith(f":{p.pid}")]
    victim.kill()
    wait_run(run, timeout=120)
    search.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, search.reason
    rows = {t.number: t for t in trials}
    assert rows[1].state == TrialState.FAILED and rows[1].reason.startswith(f"worker lost: {remote.worker}")
    assert [rows[n].state for n in (2, 3, 4)] == [TrialState.COMPLETED] * 3
    # The others ran on the worker left, the sweep's own.
    assert {rows[n].worker for n in (2, 3, 4)} == {search.worker}
    assert rows[4].is_best and rows[4].params == {"x": 3}
    assert "[trial 1] Failed: worker lost" in log_text(search)
