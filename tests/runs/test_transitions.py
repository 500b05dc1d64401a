"""The state machine over every pair of states: legal edges move, illegal ones are refused."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from pipelines_ui.models import Pipeline, PipelineVersion
from runs.models import RUN_TRANSITIONS, STEP_TRANSITIONS, Run, RunState, StepRun, StepState, Transition
from runs.transitions import (
    IllegalTransition,
    audited_together,
    run_transition,
    step_run_queue_and_start,
    step_run_transition,
)


@pytest.fixture
def run(db, team, alice):
    pipeline = Pipeline.objects.create(team=team, name="p", created_by=alice)
    version = PipelineVersion.objects.create(pipeline=pipeline, number=1, spec={}, content_hash="x" * 64)
    return Run.objects.create(pipeline=pipeline, version=version)


@pytest.mark.parametrize(("current", "to"), list(itertools.product(StepState.values, StepState.values)))
def test_step_transitions_follow_the_table(run, current, to, django_capture_on_commit_callbacks):
    step_run = StepRun.objects.create(run=run, name="s", state=current, queue="q", attempt=1)
    legal = to in STEP_TRANSITIONS.get(current, frozenset())
    if legal:
        assert step_run_transition(step_run=step_run, to=to) is True
        step_run.refresh_from_db()
        assert step_run.state == to
        assert Transition.objects.filter(step_run=step_run, old=current, new=to).count() == 1
    else:
        with pytest.raises(IllegalTransition):
            step_run_transition(step_run=step_run, to=to)
        step_run.refresh_from_db()
        assert step_run.state == current
        assert not Transition.objects.filter(step_run=step_run).exists()


@pytest.mark.parametrize(("current", "to"), list(itertools.product(RunState.values, RunState.values)))
def test_run_transitions_follow_the_table(run, current, to):
    Run.objects.filter(pk=run.pk).update(state=current)
    run.refresh_from_db()
    if to in RUN_TRANSITIONS.get(current, frozenset()):
        assert run_transition(run=run, to=to) is True
        run.refresh_from_db()
        assert run.state == to
    else:
        with pytest.raises(IllegalTransition):
            run_transition(run=run, to=to)
        run.refresh_from_db()
        assert run.state == current


def test_a_stale_copy_loses_the_compare_and_set(run):
    step_run = StepRun.objects.create(run=run, name="s", state=StepState.QUEUED, queue="q", attempt=1)
    other_copy = StepRun.objects.get(pk=step_run.pk)
    assert step_run_transition(step_run=step_run, to=StepState.RUNNING) is True
    # A duplicate delivery still believes the step is queued: it changes nothing.
    assert step_run_transition(step_run=other_copy, to=StepState.RUNNING) is False
    assert Transition.objects.filter(step_run=step_run).count() == 1


def test_an_older_attempt_is_fenced_out(run):
    step_run = StepRun.objects.create(run=run, name="s", state=StepState.RUNNING, queue="q", attempt=1)
    stalled = StepRun.objects.get(pk=step_run.pk)
    step_run_transition(step_run=step_run, to=StepState.FAILED, reason="worker lost")
    step_run_transition(step_run=step_run, to=StepState.QUEUED)
    step_run.refresh_from_db()
    assert step_run.attempt == 2
    step_run_transition(step_run=step_run, to=StepState.RUNNING)
    # The first attempt wakes up and reports success: refused, the new attempt owns the step.
    assert step_run_transition(step_run=stalled, to=StepState.SUCCEEDED) is False
    step_run.refresh_from_db()
    assert (step_run.state, step_run.attempt) == (StepState.RUNNING, 2)


def test_first_queueing_starts_attempt_one(run):
    step_run = StepRun.objects.create(run=run, name="s", queue="q")
    step_run_transition(step_run=step_run, to=StepState.QUEUED)
    step_run.refresh_from_db()
    assert step_run.attempt == 1 and step_run.queued_at is not None


@pytest.mark.parametrize("current", StepState.values)
def test_queue_and_start_is_two_audited_edges_in_one_compare_and_set(
    run, current, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("runs.broadcast.send", lambda run_id, payload, **kw: sent.append(payload))
    step_run = StepRun.objects.create(run=run, name="s", state=current, queue="q", attempt=1)
    stale = StepRun.objects.get(pk=step_run.pk)
    if StepState.QUEUED not in STEP_TRANSITIONS.get(current, frozenset()):
        with pytest.raises(IllegalTransition):
            step_run_queue_and_start(step_run=step_run, worker="w1")
        assert StepRun.objects.get(pk=step_run.pk).state == current
        assert not Transition.objects.filter(step_run=step_run).exists()
        return
    with django_capture_on_commit_callbacks(execute=True):
        assert step_run_queue_and_start(step_run=step_run, reason="rerun forced", worker="w1") is True
    step_run.refresh_from_db()
    # A first queueing starts attempt 1, a retry the next one.
    attempt = 1 if current == StepState.PENDING else 2
    assert (step_run.state, step_run.attempt, step_run.worker) == (StepState.RUNNING, attempt, "w1")
    assert step_run.queued_at is not None and step_run.started_at is not None and step_run.reason == "rerun forced"
    edges = list(Transition.objects.filter(step_run=step_run).order_by("id").values_list("old", "new", "reason"))
    assert edges == [(current, StepState.QUEUED, "rerun forced"), (StepState.QUEUED, StepState.RUNNING, "")]
    assert [(e["state"], e["started_at"] is None) for e in sent] == [
        (StepState.QUEUED, True),
        (StepState.RUNNING, False),
    ]
    # A copy read before lost the race: nothing more is written.
    assert step_run_queue_and_start(step_run=stale, worker="w2") is False
    assert Transition.objects.filter(step_run=step_run).count() == 2


def _transition_inserts(queries) -> int:
    return sum(q["sql"].startswith('INSERT INTO "runs_transition"') for q in queries.captured_queries)


def test_transitions_audited_together_write_their_rows_in_one_insert_in_order(run):
    done = StepRun.objects.create(run=run, name="a", state=StepState.RUNNING, queue="q", attempt=1)
    nxt = StepRun.objects.create(run=run, name="b", state=StepState.PENDING, queue="q")

    with CaptureQueriesContext(connection) as queries, transaction.atomic(), audited_together():
        assert step_run_transition(step_run=done, to=StepState.SUCCEEDED)
        assert step_run_queue_and_start(step_run=nxt)
        assert run_transition(run=run, to=RunState.RUNNING)
        assert not Transition.objects.exists(), "written as the block ends"

    assert _transition_inserts(queries) == 1
    assert list(Transition.objects.order_by("pk").values_list("step_run__name", "old", "new")) == [
        ("a", StepState.RUNNING, StepState.SUCCEEDED),
        ("b", StepState.PENDING, StepState.QUEUED),
        ("b", StepState.QUEUED, StepState.RUNNING),
        (None, RunState.QUEUED, RunState.RUNNING),
    ]


def test_a_block_that_raises_writes_no_audit_and_leaves_none_for_the_next(run):
    step = StepRun.objects.create(run=run, name="a", state=StepState.RUNNING, queue="q", attempt=1)
    with pytest.raises(ZeroDivisionError), transaction.atomic(), audited_together():
        step_run_transition(step_run=step, to=StepState.SUCCEEDED)
        raise ZeroDivisionError
    step.refresh_from_db()
    assert step.state == StepState.RUNNING and not Transition.objects.exists()

    # The next transition, outside any block, is written at once: its row alone.
    with transaction.atomic():
        step_run_transition(step_run=step, to=StepState.FAILED)
        assert list(Transition.objects.values_list("old", "new")) == [(StepState.RUNNING, StepState.FAILED)]


def test_audited_together_needs_a_transaction(transactional_db):
    with pytest.raises(RuntimeError, match="inside a transaction"), audited_together():
        pass
