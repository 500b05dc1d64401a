"""A trial's row between workers: one claim wins, a dead sweep's trial is never claimed, and the
driver follows a trial run elsewhere through its reports, its result and its heartbeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import gc, sweep_trials, trial_handles, trial_runner
from runs.models import Artifact, StepRun, StepState, SweepTrial, SweepTrialReport, TrialState
from runs.step_records import MetricRecord
from runs.trial_handles import ClaimableTrial
from tests.runs.conftest import set_step


@pytest.fixture
def step_run(run) -> StepRun:
    return set_step(run, "train", attempt=1, state=StepState.RUNNING)


@pytest.fixture
def queued(step_run) -> SweepTrial:
    return sweep_trials.sweep_trial_start(step_run=step_run, number=1, params={"x": 1})


@pytest.fixture(autouse=True)
def no_redis(monkeypatch):
    monkeypatch.setattr(trial_handles.queues, "withdraw_trial", lambda trial: None)
    monkeypatch.setattr(trial_handles, "ROW_POLL_S", 0)


def test_of_two_claimers_one_wins(queued):
    # Two workers, each with its own copy of the queued row.
    mine, theirs = SweepTrial.objects.get(pk=queued.pk), SweepTrial.objects.get(pk=queued.pk)
    assert sweep_trials.sweep_trial_claim(trial=mine, worker="host-a:1")
    assert not sweep_trials.sweep_trial_claim(trial=theirs, worker="host-b:2")
    queued.refresh_from_db()
    assert (queued.state, queued.worker) == (TrialState.RUNNING, "host-a:1")
    assert queued.started_at is not None and queued.heartbeat_at is not None


@pytest.mark.parametrize("change", [{"state": StepState.CANCELED}, {"attempt": 2, "state": StepState.RUNNING}])
def test_no_trial_of_a_sweep_attempt_that_ended_is_claimed(step_run, queued, change):
    StepRun.objects.filter(pk=step_run.pk).update(**change)
    assert not sweep_trials.sweep_trial_claim(trial=queued, worker="host-b:2")
    queued.refresh_from_db()
    assert queued.state == TrialState.QUEUED and queued.worker == ""


def test_a_shipping_worker_hears_the_stop_request_and_loses_a_trial_not_its_own(queued):
    assert sweep_trials.sweep_trial_claim(trial=queued, worker="host-b:2")
    ship = {"trial": queued, "lines": ["a"], "metrics": [MetricRecord("score", 0.5, 0)]}
    assert sweep_trials.sweep_trial_ship(worker="host-b:2", **ship) == ""
    sweep_trials.sweep_trial_request_stop(trial=queued, reason="early termination: bandit")
    assert sweep_trials.sweep_trial_ship(worker="host-b:2", **ship) == "early termination: bandit"
    assert sweep_trials.sweep_trial_ship(worker="host-c:3", **ship).startswith("canceled:")
    # Reports come out in order, once.
    lines, metrics = sweep_trials.sweep_trial_take_reports(trial=queued)
    assert lines == ["a", "a"] and metrics == [MetricRecord("score", 0.5, 0)] * 2
    assert sweep_trials.sweep_trial_take_reports(trial=queued) == ([], [])
    assert not SweepTrialReport.objects.exists()


class Ran:
    """What `run_here` starts: a trial this worker runs (a TrialAttempt in the executor)."""

    def __init__(self):
        self.stop_reason = self.stopped_by = ""

    def stop(self, reason):
        self.stopped_by = reason


def handle(row: SweepTrial, ran: list) -> ClaimableTrial:
    def run_here():
        ran.append(Ran())
        return ran[-1]

    return ClaimableTrial(SweepTrial.objects.select_related("step_run").get(pk=row.pk), run_here=run_here)


def test_the_sweeps_worker_runs_a_trial_no_one_claimed_after_the_delay(queued, settings):
    settings.STEPWISE_TRIAL_CLAIM_DELAY_S = 3600
    ran: list = []
    trial = handle(queued, ran)
    trial.poll()
    assert ran == [] and not trial.worker
    settings.STEPWISE_TRIAL_CLAIM_DELAY_S = 0
    trial.poll()
    assert len(ran) == 1 and trial.local is ran[0] and trial.worker
    queued.refresh_from_db()
    assert queued.state == TrialState.RUNNING and queued.worker == trial.worker


def test_a_trial_stopped_while_queued_is_claimed_so_that_no_worker_runs_it(queued, settings):
    settings.STEPWISE_TRIAL_CLAIM_DELAY_S = 3600
    ran: list = []
    trial = handle(queued, ran)
    trial.stop("timeout: the sweep ran longer than 3 s")
    assert trial.done() and ran == [] and trial.stopped_by.startswith("timeout")
    # The trial's job, picked by another worker later, runs nothing.
    assert trial_runner.trial_run(queued.pk).startswith("not run: claimed by another worker")


def test_the_driver_follows_a_trial_another_worker_claimed(queued, settings):
    ran: list = []
    trial = handle(queued, ran)
    assert sweep_trials.sweep_trial_claim(trial=SweepTrial.objects.get(pk=queued.pk), worker="host-b:2")
    sweep_trials.sweep_trial_ship(trial=queued, worker="host-b:2", lines=["hi"], metrics=[MetricRecord("s", 1, 0)])
    settings.STEPWISE_TRIAL_CLAIM_DELAY_S = 0
    trial.poll()
    assert ran == [] and trial.worker == "host-b:2" and not trial.done()
    assert trial.take() == (["hi"], [MetricRecord("s", 1.0, 0)])
    trial.stop("early termination: bandit")
    assert SweepTrial.objects.get(pk=queued.pk).stop_requested == "early termination: bandit"
    output = {"sha256": "ab" * 32, "size": 3, "file_count": 1, "kind": "uri_folder"}
    result = {"returncode": -15, "stop_reason": "early termination: bandit", "outputs": {"model": output}}
    assert sweep_trials.sweep_trial_hand_in(trial=queued, worker="host-b:2", result=result)
    trial.poll()
    assert trial.done() and trial.returncode == -15 and trial.stopped_by == "early termination: bandit"
    ((manifest, kind),) = trial.stored_outputs.values()
    assert (manifest.sha256, manifest.size, kind) == ("ab" * 32, 3, "uri_folder")
    # Registered and held by the trial: no garbage collection takes it while its sweep runs.
    (artifact,) = queued.artifacts.all()
    Artifact.objects.filter(pk=artifact.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert artifact.sha256 not in gc.collect(dry_run=True).artifacts
    StepRun.objects.filter(pk=queued.step_run_id).update(state=StepState.FAILED)
    assert artifact.sha256 in gc.collect(dry_run=True).artifacts


def test_a_trial_whose_worker_stopped_beating_is_lost(queued):
    trial = handle(queued, [])
    assert sweep_trials.sweep_trial_claim(trial=SweepTrial.objects.get(pk=queued.pk), worker="host-b:2")
    SweepTrial.objects.filter(pk=queued.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    trial.poll()
    assert trial.done() and trial.stop_reason.startswith("worker lost: host-b:2 sent no heartbeat")
    assert not trial.stopped_by  # failed, not canceled


def test_the_trials_of_a_sweep_whose_worker_died_are_canceled_by_the_reconciler(step_run, queued):
    from runs import reconciler

    beating = sweep_trials.sweep_trial_start(step_run=step_run, number=2, params={"x": 2})
    silent = sweep_trials.sweep_trial_start(step_run=step_run, number=3, params={"x": 3})
    for trial in (beating, silent):
        assert sweep_trials.sweep_trial_claim(trial=trial, worker="host-b:2")
    # While the sweep's attempt runs, its driver alone ends its trials.
    assert reconciler.tick()["orphan_trials"] == []
    # Its worker was lost: nobody will drive them. The silent one's worker stopped beating.
    StepRun.objects.filter(pk=step_run.pk).update(state=StepState.FAILED)
    SweepTrial.objects.filter(pk=silent.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert sorted(reconciler.tick()["orphan_trials"]) == sorted([queued.pk, silent.pk])
    states = dict(SweepTrial.objects.values_list("number", "state"))
    assert states == {1: TrialState.CANCELED, 2: TrialState.RUNNING, 3: TrialState.CANCELED}
    assert "attempt 1 ended" in SweepTrial.objects.get(pk=silent.pk).reason
    # A retry of the step is another attempt: the old attempt's trials stay ended, the beating
    # one goes once its worker is quiet too.
    SweepTrial.objects.filter(pk=beating.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    StepRun.objects.filter(pk=step_run.pk).update(state=StepState.RUNNING, attempt=2)
    assert reconciler.tick()["orphan_trials"] == [beating.pk]
    assert reconciler.tick()["orphan_trials"] == []
