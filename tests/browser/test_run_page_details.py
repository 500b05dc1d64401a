"""The run page's smaller truths in a real browser: durations tick, Cancel and Rerun ask first,
exit code 0 is not red, a step without output draws no empty log box."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from pipelines_ui.models import Team
from runs.models import Run, RunState, StepState
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, make_run, set_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots19")
GREEN = "rgb(40, 167, 69)"


@pytest.fixture
def run(monkeypatch):
    # Nothing enqueues the steps: each test puts the run in the state it looks at.
    monkeypatch.setattr("runs.orchestrator.run_advance", lambda run_id: None)
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    return make_run(make_pipeline(team, alice), alice)  # prep -> train -> report


def running(run: Run) -> None:
    started = timezone.now() - timedelta(minutes=5)
    set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1, started_at=started, finished_at=started, exit_code=0)
    set_step(run, "train", state=StepState.RUNNING, attempt=1, started_at=started)
    Run.objects.filter(pk=run.pk).update(state=RunState.RUNNING, started_at=started)


def test_a_running_steps_duration_ticks(web, page, run):
    running(run)
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")
    page.clock.install()
    page.goto(f"{web}/runs/{run.pk}/steps/train/")
    cell = page.locator('#part-steps tr[data-step="train"] [data-since]')
    # Five minutes and the seconds the sign-in took (tens of them on a loaded machine).
    duration = r"5m [0-5]\ds"
    before = cell.inner_text()
    assert re.fullmatch(duration, before)
    page.clock.run_for(3000)
    after = cell.inner_text()
    assert after != before and re.fullmatch(duration, after)
    # A live refresh may swap in a server-rendered panel between two ticks: the next tick makes
    # the panel's duration agree with the table's again; read both at one moment.
    both = """() => ['#part-steps tr[data-step="train"] [data-since]', '#step-panel [data-since]']
        .map(s => document.querySelector(s).innerText)"""
    for _ in range(5):
        table, panel = page.evaluate(both)
        if table == panel:
            break
        page.clock.run_for(1000)
    assert table == panel and re.fullmatch(duration, panel)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-running.png"), full_page=True)


def test_cancel_asks_first(web, page, run):
    running(run)
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click("#run-actions button:has-text('Cancel')")
    assert questions == [f"Cancel run #{run.pk}? Its running steps stop and the steps not started yet are skipped."]
    run.refresh_from_db()
    assert not run.cancel_requested and run.state == RunState.RUNNING

    page.once("dialog", lambda d: answer(d, True))
    with page.expect_navigation():
        page.click("#run-actions button:has-text('Cancel')")
    run.refresh_from_db()
    assert run.cancel_requested


def test_rerun_asks_first_and_exit_code_zero_is_green(web, page, run):
    now = timezone.now()
    for name in ("prep", "train", "report"):
        set_step(run, name, state=StepState.SUCCEEDED, attempt=1, started_at=now, finished_at=now, exit_code=0)
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED, started_at=now, finished_at=now)
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#run-actions button:has-text('Rerun')")
    assert Run.objects.count() == 1
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#step-panel button:has-text('Rerun from this step')")
    assert Run.objects.count() == 1

    colours = page.eval_on_selector_all("#part-steps code.exit-code", "els => els.map(e => getComputedStyle(e).color)")
    assert colours == [GREEN] * 3
    page.screenshot(path=str(SHOTS / "run-succeeded.png"), full_page=True)


def test_a_step_without_output_draws_no_empty_log_box(web, page, run):
    earlier = make_run(run.pipeline, run.created_by)
    now = timezone.now()
    source = set_step(earlier, "prep", state=StepState.SUCCEEDED, attempt=1, started_at=now, finished_at=now)
    set_step(run, "prep", state=StepState.REUSED, finished_at=now, reused_from=source)
    set_step(run, "train", state=StepState.SUCCEEDED, attempt=1, started_at=now, finished_at=now, exit_code=0)
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")

    page.goto(f"{web}/runs/{run.pk}/steps/prep/")
    assert not page.is_visible("#log")
    assert page.is_visible(f"text=Nothing ran here: the log is on run #{earlier.pk}")
    assert not page.is_visible(".log-empty-note")

    page.goto(f"{web}/runs/{run.pk}/steps/train/")
    assert not page.is_visible("#log")
    assert page.is_visible(".log-empty-note")
    assert page.inner_text(".log-empty-note") == "No output."


def test_a_canceled_run_counts_only_what_ran_and_offers_no_retry(web, page, run):
    now = timezone.now()
    set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1, started_at=now, finished_at=now, exit_code=0)
    set_step(run, "train", state=StepState.CANCELED, attempt=1, started_at=now, finished_at=now, reason="canceled")
    set_step(run, "report", state=StepState.SKIPPED, finished_at=now, reason="the run was canceled")
    Run.objects.filter(pk=run.pk).update(state=RunState.CANCELED, started_at=now, finished_at=now)
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/")
    assert page.inner_text("#progress-text") == "1 / 3 steps"
    assert page.locator(".progress-other").all_inner_texts() == ["· 1 canceled", "· 1 skipped"]
    assert page.locator("#run-actions button").all_inner_texts() == ["Rerun"]
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-canceled.png"), full_page=True)
