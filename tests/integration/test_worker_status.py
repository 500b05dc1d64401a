"""A real worker process and its record: starting, beating, stopping, dying, draining."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import ComputeTarget, RunState, StepState, Worker, WorkerState
from runs.worker_status import Status, worker_drain, worker_undrain, workers_page
from tests.integration.conftest import ROOT, Workers, wait_for
from tests.integration.test_execution import steps_of, wait_run
from tests.integration.test_faults import start_run
from tests.integration.test_two_hosts import CHAIN, open_gate

pytestmark = pytest.mark.integration

ONE_STEP = "type: pipeline\njobs:\n  only:\n    type: command\n    command: echo done\n"


def record_of(proc: subprocess.Popen, workers: Workers) -> Worker:
    return wait_for(
        lambda: Worker.objects.filter(pid=proc.pid).first(), message="the worker's record", details=workers.logs
    )


def status_of(worker: Worker, user) -> str:
    page = workers_page(user=user)
    return next(row.status for row in page.live + page.past if row.worker.pk == worker.pk)


def test_a_worker_records_itself_beats_while_idle_and_says_when_it_stopped(workers, alice):
    (proc,) = workers.start(1)
    worker = record_of(proc, workers)
    assert (worker.name, worker.host, worker.targets) == (
        f"{socket.gethostname()}:{proc.pid}",
        socket.gethostname(),
        ["test-target"],
    )
    assert worker.state == WorkerState.IDLE and worker.rq_name
    first_beat = worker.heartbeat_at
    wait_for(lambda: Worker.objects.get(pk=worker.pk).heartbeat_at > first_beat, message="a heartbeat while idle")
    assert status_of(worker, alice) == Status.IDLE

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    worker.refresh_from_db()
    assert worker.state == WorkerState.STOPPED and worker.stopped_at is not None
    assert status_of(worker, alice) == Status.STOPPED


def test_a_sigkilled_worker_never_says_it_stopped_and_shows_as_lost(workers, alice):
    (proc,) = workers.start(1)
    worker = record_of(proc, workers)
    proc.kill()
    proc.wait(timeout=30)
    worker.refresh_from_db()
    assert worker.state == WorkerState.IDLE and worker.stopped_at is None
    # As it shows once its last heartbeat is older than the reconciler's limit.
    Worker.objects.filter(pk=worker.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert status_of(worker, alice) == Status.LOST


def test_targets_come_from_the_queues_option_and_the_arguments_and_unknown_ones_are_refused(workers):
    ComputeTarget.objects.create(name="other", queue=f"{workers.queue}-other")

    def worker(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "manage.py"), "stepwise_worker", *args]
        return subprocess.run(command, cwd=ROOT, env=workers.env(), capture_output=True, text=True, timeout=60)

    done = worker("--queues", "other,test-target", "--burst")
    assert done.returncode == 0, done.stderr
    assert Worker.objects.get(state=WorkerState.STOPPED).targets == ["other", "test-target"]

    Worker.objects.all().delete()
    done = worker("test-target", "--queues", "other", "--burst")
    assert done.returncode == 0, done.stderr
    assert Worker.objects.get().targets == ["test-target", "other"]

    refused = worker("--queues", "test-target,nope", "--burst")
    assert refused.returncode == 2
    assert "unknown compute target(s): nope" in refused.stderr


def test_a_drained_worker_takes_nothing_until_undrained_and_stops_at_once(workers, alice, team, tmp_path):
    (proc,) = workers.start(1)
    worker = record_of(proc, workers)
    assert worker_drain(worker=worker, user=alice)
    wait_for(lambda: status_of(worker, alice) == Status.DRAINED, message="drained")

    run = start_run(tmp_path, ONE_STEP, alice, team)
    queued_at = steps_of(run)["only"].queued_at
    # Alive and beating for two seconds after the step was queued, and it did not take it.
    wait_for(
        lambda: Worker.objects.get(pk=worker.pk).heartbeat_at > queued_at + timedelta(seconds=2),
        message="two heartbeats of the drained worker",
    )
    assert steps_of(run)["only"].state == StepState.QUEUED

    assert worker_undrain(worker=worker)
    assert wait_run(run).state == RunState.SUCCEEDED
    assert steps_of(run)["only"].worker == worker.name

    worker_drain(worker=worker, user=alice)
    wait_for(lambda: status_of(worker, alice) == Status.DRAINED, message="drained again")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert Worker.objects.get(pk=worker.pk).state == WorkerState.STOPPED


# A worker asked to stop or drain during a step starts none of those its success made ready.
def test_a_worker_stopped_mid_chain_finishes_its_step_and_leaves_the_next_to_others(
    workers, alice, team, tmp_path, settings
):
    (proc,) = workers.start(1)
    record_of(proc, workers)
    run = start_run(tmp_path, CHAIN, alice, team)
    first = wait_for(
        lambda: (s := steps_of(run)["first"]).state == StepState.RUNNING and s, message="the first step to run"
    )
    # SIGTERM: RQ's warm shutdown lets the job end; the step finishes, the chain does not go on.
    proc.send_signal(signal.SIGTERM)
    open_gate(settings.STEPWISE_WORKDIR, first)
    assert proc.wait(timeout=30) == 0
    steps = steps_of(run)
    assert steps["first"].state == StepState.SUCCEEDED
    assert steps["second"].state == StepState.QUEUED

    (other,) = workers.start(1)
    run = wait_run(run)
    assert run.state == RunState.SUCCEEDED
    assert steps_of(run)["second"].worker == record_of(other, workers).name
