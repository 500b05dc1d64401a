"""A worker's record of itself (runs/worker_status.py), written as the worker process writes it."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from runs import worker
from runs.models import StepState, Worker, WorkerState
from runs.worker_status import KEEP, WorkerRecord, worker_drain, worker_prune, worker_undrain
from tests.runs.conftest import make_run, set_step
from tests.runs.test_workers_views import make_worker

pytestmark = pytest.mark.django_db


def record(name: str = "host-a:101", **fields) -> WorkerRecord:
    rec = WorkerRecord(name=name, host="host-a", pid=101, rq_name="rq-101", targets=["local"], **fields)
    rec.register()
    return rec


def row(rec: WorkerRecord) -> Worker:
    return Worker.objects.get(pk=rec.pk)


def test_a_worker_is_named_as_the_steps_it_runs_record_it():
    assert worker.worker_name() == f"{socket.gethostname()}:{os.getpid()}"


def test_register_takes_over_the_row_of_a_dead_process_with_the_same_pid(alice):
    old = make_worker("host-a:101", age_s=3600, steps_done=9, drain=True, state=WorkerState.BUSY)
    rec = record()
    assert rec.pk == old.pk
    fresh = row(rec)
    assert (fresh.state, fresh.drain, fresh.steps_done, fresh.stopped_at) == (WorkerState.IDLE, False, 0, None)
    assert fresh.targets == ["local"] and fresh.rq_name == "rq-101"
    assert timezone.now() - fresh.started_at < timedelta(minutes=1)


def test_a_beat_refreshes_the_heartbeat_and_says_whether_to_drain(alice):
    rec = record()
    Worker.objects.filter(pk=rec.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=1))
    assert rec.beat() is False
    assert timezone.now() - row(rec).heartbeat_at < timedelta(seconds=30)
    worker_drain(worker=row(rec), user=alice)
    assert rec.beat() is True
    assert rec.drain_requested() is True
    worker_undrain(worker=row(rec))
    assert rec.beat() is False


def test_a_draining_worker_claims_no_job():
    rec = record()
    assert rec.claim() is True
    assert row(rec).state == WorkerState.BUSY
    rec.job_done(step_run_id=None, since=timezone.now())
    assert row(rec).state == WorkerState.IDLE
    worker_drain(worker=row(rec), user=None)
    assert rec.claim() is False
    assert row(rec).state == WorkerState.IDLE


def test_a_row_deleted_under_a_live_worker_is_written_again():
    rec = record()
    Worker.objects.all().delete()
    assert rec.beat() is False
    assert Worker.objects.filter(name="host-a:101", state=WorkerState.IDLE).exists()
    Worker.objects.all().delete()
    assert rec.claim() is True
    assert Worker.objects.get(name="host-a:101").state == WorkerState.BUSY


def test_a_job_counts_the_steps_this_worker_started_in_its_run(pipeline, alice):
    rec = record()
    since = timezone.now()
    run, other = make_run(pipeline, alice), make_run(pipeline, alice)
    later = since + timedelta(seconds=1)
    # The job's step and the chain it ran after it; an earlier attempt, another worker's and
    # another run's steps do not count.
    first = set_step(run, "prep", state=StepState.SUCCEEDED, worker=rec.name, started_at=later)
    set_step(run, "train", state=StepState.FAILED, worker=rec.name, started_at=later)
    set_step(run, "report", state=StepState.SUCCEEDED, worker="host-b:7", started_at=later)
    set_step(other, "prep", state=StepState.SUCCEEDED, worker=rec.name, started_at=later)
    set_step(other, "train", state=StepState.SUCCEEDED, worker=rec.name, started_at=since - timedelta(hours=1))
    rec.claim()
    rec.job_done(step_run_id=first.pk, since=since)
    assert (row(rec).steps_done, row(rec).state) == (2, WorkerState.IDLE)
    # A job that ran nothing (a stale delivery) counts none.
    rec.job_done(step_run_id=first.pk, since=timezone.now() + timedelta(seconds=5))
    assert row(rec).steps_done == 2


def test_a_worker_that_stops_says_so():
    rec = record()
    rec.stopped()
    stopped = row(rec)
    assert stopped.state == WorkerState.STOPPED and stopped.stopped_at is not None
    assert worker_drain(worker=stopped, user=None) is False


def test_old_stopped_and_lost_workers_are_pruned_but_not_one_still_running_a_step(pipeline, alice):
    now = timezone.now()
    make_worker("host-a:1", age_s=(KEEP + timedelta(hours=1)).total_seconds(), state=WorkerState.STOPPED)
    make_worker("host-a:2", age_s=(KEEP + timedelta(hours=1)).total_seconds())
    make_worker("host-a:3", age_s=(KEEP + timedelta(hours=1)).total_seconds(), state=WorkerState.BUSY)
    make_worker("host-a:4", age_s=3600, state=WorkerState.STOPPED)
    set_step(make_run(pipeline, alice), "prep", state=StepState.RUNNING, worker="host-a:3", heartbeat_at=now)
    assert worker_prune(now=now) == 2
    assert sorted(Worker.objects.values_list("name", flat=True)) == ["host-a:3", "host-a:4"]


def test_draining_is_false_outside_a_step_worker():
    assert worker.draining() is False
