"""The sweep driver on its own: fake trials stand in for processes, so each rule is shown
without a worker (concurrency, early termination, best pick, setup failure, cancel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs import sweep_driver, sweep_trials
from runs.models import StepRun, StepState, SweepTrial, TrialState
from runs.step_records import MetricRecord
from runs.sweep_driver import SweepDriver, TrialSetupError
from stepwise.spec.sweep import Distribution, EarlyTermination, Objective, Sampling, SweepLimits, SweepSpec
from tests.runs.conftest import set_step


class FakeTrial:
    """Reports `scores` one per poll, then exits 0 (or `exit_code`); stops when told."""

    def __init__(self, number: int, scores: list[float], exit_code: int = 0):
        self.number = number
        self.pending = [MetricRecord("score", s, i) for i, s in enumerate(scores)]
        self.exit_code = exit_code
        self.returncode: int | None = None
        self.error: BaseException | None = None
        self.stop_reason = ""
        self.stopped_by = ""
        self.outputs = {"model": (Path(f"/trial/{number}/model"), "uri_folder")}
        self.stored_outputs: dict = {}
        self.setup_error = ""
        self.worker = "here"

    def poll(self) -> None:
        pass

    def done(self) -> bool:
        if self.stopped_by:
            self.returncode = -15
        elif not self.pending and self.returncode is None:
            self.returncode = self.exit_code
        return self.returncode is not None

    def join(self, timeout: float | None = None) -> None:
        pass

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.stopped_by = self.stopped_by or reason

    def take(self):
        if self.stopped_by or not self.pending:
            return [], []
        return [f"report {self.pending[0].step}"], [self.pending.pop(0)]


class FakeLog:
    def __init__(self, step_run: StepRun, *, owned_for: int = 10**9):
        self.step_run = step_run
        self.lines: list[str] = []
        self.flushes = 0
        self.owned_for = owned_for

    @property
    def pending_lines(self) -> list[str]:
        return []

    def add_lines(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def flush(self, *, force: bool = False) -> bool:
        self.flushes += 1
        return self.flushes <= self.owned_for


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(sweep_driver, "POLL_S", 0)
    monkeypatch.setattr(sweep_driver, "HEARTBEAT_S", 0)


@pytest.fixture
def step_run(run) -> StepRun:
    return set_step(run, "train", attempt=1, state=StepState.RUNNING)


def spec(values: list[int], *, concurrent: int = 2, policy: EarlyTermination | None = None) -> SweepSpec:
    return SweepSpec(
        search_space={"x": Distribution("choice", values=values)},
        objective=Objective("score", "maximize"),
        sampling=Sampling("grid"),
        limits=SweepLimits(max_total_trials=len(values), max_concurrent_trials=concurrent),
        early_termination=policy,
    )


def drive(step_run, sweep: SweepSpec, scores: dict[int, list[float]], log=None, fail_setup=()):
    launched: list[int] = []
    running_at_launch: list[int] = []
    log = log or FakeLog(step_run)

    def launch(number, params):
        if params["x"] in fail_setup:
            raise TrialSetupError("input data: no such file")
        running_at_launch.append(len(driver.running))
        launched.append(params["x"])
        # Claimed at once by this worker, as trial_handles.ClaimableTrial does when no other claims it.
        row = SweepTrial.objects.get(step_run=step_run, number=number)
        assert sweep_trials.sweep_trial_claim(trial=row, worker="here")
        return FakeTrial(number, scores[params["x"]])

    driver = SweepDriver(spec=sweep, input_types={"x": "integer"}, log=log, launch=launch, seed=1)
    return driver, driver.run(), launched, running_at_launch, log


def rows(step_run) -> dict[int, SweepTrial]:
    return {t.params["x"]: t for t in SweepTrial.objects.filter(step_run=step_run)}


def test_trials_run_at_most_n_at_once_and_the_best_is_kept(step_run):
    scores = {1: [0.1, 0.2], 2: [0.5, 0.9], 3: [0.3], 4: [0.2, 0.4, 0.6]}
    _driver, outcome, launched, running_at_launch, log = drive(step_run, spec([1, 2, 3, 4]), scores)
    assert launched == [1, 2, 3, 4] and max(running_at_launch) < 2
    assert outcome.best == 2 and outcome.failure == ""
    assert outcome.outputs == {"model": (Path("/trial/2/model"), "uri_folder")}
    trials = rows(step_run)
    assert {x: (t.state, t.objective) for x, t in trials.items()} == {
        1: (TrialState.COMPLETED, 0.2),
        2: (TrialState.COMPLETED, 0.9),
        3: (TrialState.COMPLETED, 0.3),
        4: (TrialState.COMPLETED, 0.6),
    }
    assert [x for x, t in trials.items() if t.is_best] == [2]
    assert trials[4].metrics == {"score": [0.2, 0.4, 0.6]}
    assert "[trial 2] report 1" in log.lines and log.lines[-1].startswith("[sweep] best: trial 2 with score=0.9")
    # Each objective is charted at its trial's number.
    assert sorted(step_run.metrics.values_list("step", "value")) == [(1, 0.2), (2, 0.9), (3, 0.3), (4, 0.6)]


def test_early_termination_stops_a_trial_behind_the_best_and_never_picks_it(step_run):
    policy = EarlyTermination("bandit", slack_amount=0.1)
    # One at a time: trial 2 is judged against trial 1's finished series.
    scores = {1: [0.5, 0.8, 0.9], 2: [0.1, 0.95, 0.99]}
    _d, outcome, *_ = drive(step_run, spec([1, 2], concurrent=1, policy=policy), scores)
    trials = rows(step_run)
    assert trials[2].state == TrialState.EARLY_TERMINATED and trials[2].reason.startswith("bandit:")
    assert trials[2].objective is None and trials[2].metrics == {"score": [0.1]}
    assert outcome.best == 1


def test_a_trial_that_cannot_start_stops_the_sweep(step_run):
    _d, outcome, launched, *_ = drive(step_run, spec([1, 2, 3], concurrent=1), {2: [1.0], 3: [1.0]}, fail_setup={1})
    assert launched == [] and outcome.best is None
    assert outcome.failure == (
        "no trial completed with a value of 'score' (trial 1 could not start: input data: no such file)"
    )
    assert [(t.state, t.reason) for t in rows(step_run).values()] == [
        (TrialState.FAILED, "trial 1 could not start: input data: no such file")
    ]


def test_a_trial_without_the_primary_metric_fails_and_the_others_go_on(step_run):
    scores = {1: [], 2: [0.3]}
    _d, outcome, *_ = drive(step_run, spec([1, 2]), scores)
    trials = rows(step_run)
    assert (trials[1].state, trials[1].reason) == (TrialState.FAILED, "the trial logged no value of 'score'")
    assert outcome.best == 2


def test_losing_the_step_cancels_the_running_trials_and_starts_no_more(step_run):
    log = FakeLog(step_run, owned_for=1)
    scores = {x: [0.1] * 50 for x in (1, 2, 3, 4)}
    _d, outcome, launched, *_ = drive(step_run, spec([1, 2, 3, 4]), scores, log=log)
    assert outcome.fenced and outcome.best is None
    assert launched == [1, 2]
    assert {t.state for t in rows(step_run).values()} == {TrialState.CANCELED}


def test_a_trial_row_keeps_the_latest_values_of_each_metric(step_run, monkeypatch):
    monkeypatch.setattr(sweep_driver, "ROW_METRIC_VALUES", 3)
    _d, outcome, *_ = drive(step_run, spec([1]), {1: [0.1, 0.2, 0.3, 0.4, 0.5]})
    trial = rows(step_run)[1]
    assert trial.metrics == {"score": [0.3, 0.4, 0.5]} and trial.objective == 0.5
