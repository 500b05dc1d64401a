"""The run page of a sweep step: its trials table (best highlighted, text escaped) and plot data."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from runs import sweep_trials
from runs.models import StepRun, StepState, SweepTrial, TrialState
from tests.runs.conftest import make_pipeline, make_run

SWEEP_YAML = """
type: pipeline
jobs:
  tune:
    type: sweep
    trial:
      command: echo ${{inputs.kind}} ${{inputs.lr}}
      inputs:
        kind: {type: string}
        lr: {type: number}
    search_space:
      kind: {type: choice, values: ["<b>bold</b>", plain]}
      lr: {type: uniform, min_value: 0.01, max_value: 0.1}
    objective: {primary_metric: acc, goal: maximize}
    limits: {max_total_trials: 5, max_concurrent_trials: 2}
"""


@pytest.fixture
def sweep_step(alice, team) -> StepRun:
    run = make_run(make_pipeline(team, alice, name="tune", yaml_text=SWEEP_YAML), alice)
    step = StepRun.objects.get(run=run, name="tune")
    StepRun.objects.filter(pk=step.pk).update(attempt=1, state=StepState.RUNNING)
    step.refresh_from_db()
    return step


def trial(
    step: StepRun, number: int, params: dict, state: TrialState, acc: list[float], worker: str = "host-a:101"
) -> SweepTrial:
    row = sweep_trials.sweep_trial_start(step_run=step, number=number, params=params)
    if state == TrialState.QUEUED:
        return row
    assert sweep_trials.sweep_trial_claim(trial=row, worker=worker)
    if state != TrialState.RUNNING:
        sweep_trials.sweep_trial_finish(
            trial=row, to=state, metrics={"acc": acc}, objective=acc[-1] if state == TrialState.COMPLETED else None
        )
    else:
        sweep_trials.sweep_trial_report(trial=row, metrics={"acc": acc})
    return row


def test_the_trials_table_highlights_the_best_and_escapes_values(client, alice, sweep_step):
    trial(sweep_step, 1, {"kind": "<b>bold</b>", "lr": 0.0123456}, TrialState.COMPLETED, [0.5, 0.8])
    best = trial(sweep_step, 2, {"kind": "plain", "lr": 0.05}, TrialState.COMPLETED, [0.9])
    trial(sweep_step, 3, {"kind": "plain", "lr": 0.09}, TrialState.EARLY_TERMINATED, [0.1])
    trial(sweep_step, 4, {"kind": "plain", "lr": 0.02}, TrialState.RUNNING, [0.3, 0.4])
    sweep_trials.sweep_trial_mark_best(trial=best)
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[sweep_step.run_id, "tune"])).content.decode()
    assert "(4 of 5)" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    best_row = html.split('data-trial="2"')[0].rsplit("<tr", 1)[1]
    assert "trial-best" in best_row
    assert "trial-best" not in html.split('data-trial="1"')[0].rsplit("<tr", 1)[1]
    # Rounded values; a running trial shows its latest report.
    assert "<code>0.01235</code>" in html and "<td>0.4</td>" in html
    plot = json.loads(html.split('id="sweep-plot-data" type="application/json">')[1].split("</script>")[0])
    assert plot["axes"] == ["kind", "lr", "acc"]
    assert [t["best"] for t in plot["trials"]] == [False, True, False, False]
    assert plot["trials"][0]["values"] == ["<b>bold</b>", 0.0123456, 0.8]


def test_the_trials_table_says_which_worker_runs_each_trial(client, alice, sweep_step):
    trial(sweep_step, 1, {"kind": "plain", "lr": 0.05}, TrialState.COMPLETED, [0.5], worker="host-a:101")
    trial(sweep_step, 2, {"kind": "plain", "lr": 0.06}, TrialState.RUNNING, [0.4], worker="host-b:202")
    trial(sweep_step, 3, {"kind": "plain", "lr": 0.07}, TrialState.QUEUED, [])
    client.force_login(alice)
    parts = client.get(reverse("run_parts", args=[sweep_step.run_id]) + "?step=tune").json()["parts"]
    rows = {n: parts["trials"].split(f'data-trial="{n}"')[1].split("</tr>")[0] for n in (1, 2, 3)}
    assert "<code>host-a:101</code>" in rows[1] and "<code>host-b:202</code>" in rows[2]
    assert 'data-state="queued"' in rows[3] and "<code>host" not in rows[3]


def test_the_live_refresh_carries_the_trials_part(client, alice, sweep_step):
    trial(sweep_step, 1, {"kind": "plain", "lr": 0.05}, TrialState.FAILED, [])
    client.force_login(alice)
    parts = client.get(reverse("run_parts", args=[sweep_step.run_id]) + "?step=tune").json()["parts"]
    assert 'data-trial="1"' in parts["trials"] and "failed" in parts["trials"]


def test_a_command_step_has_no_trials_part(client, alice, team):
    run = make_run(make_pipeline(team, alice), alice)
    client.force_login(alice)
    parts = client.get(reverse("run_parts", args=[run.pk]) + "?step=train").json()["parts"]
    assert parts["trials"].strip() == ""


def test_a_trial_ends_once(sweep_step):
    row = trial(sweep_step, 1, {"kind": "plain", "lr": 0.05}, TrialState.COMPLETED, [0.5])
    with pytest.raises(sweep_trials.IllegalTrialTransition):
        sweep_trials.sweep_trial_finish(trial=row, to=TrialState.FAILED, metrics={}, objective=None)
    row.refresh_from_db()
    assert row.state == TrialState.COMPLETED and row.objective == 0.5 and row.finished_at is not None
