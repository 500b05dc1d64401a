"""Unattended and reliable: retries, timeouts, dead and frozen workers, lost Redis data,
duplicate deliveries and a broken artifact store, all with real worker processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from rq.job import Job

from runs import queues, reconciler
from runs.artifacts import artifact_path
from runs.models import Artifact, LogChunk, Run, RunState, StepOutput, StepRun, StepState, Transition
from runs.services import run_cancel, run_create
from tests.integration.conftest import Workers, pids_matching, wait_for
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run

pytestmark = pytest.mark.integration


def start_run(tmp_path: Path, yaml_text: str, user, team, **kwargs) -> Run:
    version = import_yaml(tmp_path, yaml_text, user, team, name=f"p-{uuid.uuid4().hex[:6]}")
    return run_create(version=version, user=user, **kwargs)


def start_sleeper(tmp_path: Path, marker: str, user, team) -> Run:
    """A one-step run whose step sleeps as a process named `marker`; returns once it runs."""
    yaml_text = f"type: pipeline\njobs:\n  long:\n    type: command\n    command: exec -a {marker} sleep 600\n"
    run = start_run(tmp_path, yaml_text, user, team)
    wait_for(lambda: pids_matching(marker), message="the step's process")
    return run


def running_transitions(step_run: StepRun) -> Counter[int]:
    """How many times each attempt of the step started running."""
    return Counter(
        Transition.objects.filter(step_run=step_run, new=StepState.RUNNING).values_list("attempt", flat=True)
    )


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def worker_proc(workers: Workers, step_run: StepRun) -> subprocess.Popen:
    pid = int(step_run.worker.rpartition(":")[2])
    return next(p for p in workers.procs if p.pid == pid)


def tick_until(predicate, *, timeout: float, message: str, details=None):
    """Drive the reconciler from the test, one pass a second, until `predicate()` holds."""
    acted: defaultdict[str, list[int]] = defaultdict(list)

    def step():
        for key, ids in reconciler.tick().items():
            acted[key].extend(ids)
        return predicate()

    wait_for(step, timeout=timeout, interval=1.0, message=message, details=details)
    return acted


def describe(run: Run):
    return lambda: {s.name: (s.state, s.attempt, s.reason) for s in run.steps.all()}


# ---- retries ----------------------------------------------------------------------------

FLAKY = """
type: pipeline
inputs:
  counter: {type: string}
jobs:
  flaky:
    type: command
    command: >-
      python -c "import pathlib, sys; p = pathlib.Path(sys.argv[1]);
      n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n));
      print('call', n); sys.exit(0 if n >= 3 else 1)" ${{inputs.counter}}
    inputs:
      counter: ${{parent.inputs.counter}}
    retry_settings:
      max_retries: 2
"""


@pytest.mark.parametrize("backoff_s", [0, 2])
def test_a_step_that_fails_twice_succeeds_on_its_third_attempt(workers, alice, team, tmp_path, settings, backoff_s):
    settings.STEPWISE_RETRY_BACKOFF_S = backoff_s  # the workers get it through Workers.env()
    workers.start(1)
    counter = tmp_path / "counter.txt"
    run = wait_run(start_run(tmp_path, FLAKY, alice, team, inputs={"counter": str(counter)}), timeout=60)

    assert run.state == RunState.SUCCEEDED, workers.logs()
    step = steps_of(run)["flaky"]
    assert (step.state, step.attempt, step.max_retries) == (StepState.SUCCEEDED, 3, 2)
    assert counter.read_text() == "3"
    assert running_transitions(step) == {1: 1, 2: 1, 3: 1}
    failures = list(Transition.objects.filter(step_run=step, new=StepState.FAILED).order_by("id"))
    assert [(t.attempt, t.reason) for t in failures] == [(1, "exit code 1"), (2, "exit code 1")]
    # Each attempt's log is kept, numbered on from the previous one.
    assert [line for line in log_text(step).splitlines() if line.startswith("call")] == ["call 1", "call 2", "call 3"]
    if backoff_s:
        # The second attempt waits backoff_s, the third twice as long; RQ's scheduler keeps
        # due times in whole seconds, so a retry may start up to a second early.
        started = {t.attempt: t.created_at for t in Transition.objects.filter(step_run=step, new=StepState.RUNNING)}
        failed = {t.attempt: t.created_at for t in failures}
        assert (started[2] - failed[1]).total_seconds() >= backoff_s - 1
        assert (started[3] - failed[2]).total_seconds() >= 2 * backoff_s - 1


def test_retries_exhausted_fail_the_run(workers, alice, team, tmp_path, settings):
    settings.STEPWISE_RETRY_BACKOFF_S = 0
    workers.start(1)
    counter = tmp_path / "counter.txt"
    text = FLAKY.replace("max_retries: 2", "max_retries: 1")
    run = wait_run(start_run(tmp_path, text, alice, team, inputs={"counter": str(counter)}))

    assert run.state == RunState.FAILED
    step = steps_of(run)["flaky"]
    assert (step.state, step.attempt, step.reason) == (StepState.FAILED, 2, "exit code 1")
    assert counter.read_text() == "2"


# ---- timeout ------------------------------------------------------------------------------


def test_timeout_fails_the_step_and_kills_its_whole_process_tree(workers, alice, team, tmp_path, marker):
    workers.start(1)
    # A child in the background, a grandchild that ignores SIGTERM, and the step itself.
    command = (
        f"(exec -a {marker}-child sleep 600) & "
        f"bash -c 'trap \"\" TERM; exec -a {marker}-stubborn sleep 600' & "
        f"exec -a {marker}-main sleep 600"
    )
    run = start_run(
        tmp_path,
        f"""
        type: pipeline
        jobs:
          slow:
            type: command
            command: >-
              {command}
            limits:
              timeout: 2
        """,
        alice,
        team,
    )
    wait_for(lambda: len(pids_matching(marker)) == 3, message="the step's three processes")
    run = wait_run(run, timeout=30)

    step = steps_of(run)["slow"]
    assert run.state == RunState.FAILED
    assert step.state == StepState.FAILED
    assert "timeout" in step.reason
    assert step.attempt == 1
    # The executor waits for the pipe to close, so by now every process of the tree is gone.
    assert pids_matching(marker) == []


# ---- a worker that dies ---------------------------------------------------------------------


@pytest.mark.parametrize("backoff_s", [0, 1])
def test_sigkilled_worker_attempt_is_failed_retried_elsewhere_and_its_processes_killed(
    workers, alice, team, tmp_path, settings, marker, backoff_s
):
    # With a backoff, the retry waits for RQ's scheduler, which runs in the worker that is killed
    # (the first to start); the reconciler enqueues the overdue retry itself.
    settings.STEPWISE_RETRY_BACKOFF_S = backoff_s
    workers.start(1)
    run = start_run(
        tmp_path,
        f"""
        type: pipeline
        jobs:
          long:
            type: command
            command: >-
              if [ "$STEPWISE_ATTEMPT" = 1 ]; then (exec -a {marker}-child sleep 600) &
              exec -a {marker}-main sleep 600; fi; echo attempt $STEPWISE_ATTEMPT done
            retry_settings:
              max_retries: 1
            outputs:
              out: {{type: uri_folder}}
          after:
            type: command
            command: echo after
            inputs:
              x: ${{{{parent.jobs.long.outputs.out}}}}
        """,
        alice,
        team,
    )
    wait_for(lambda: len(pids_matching(marker)) == 2, message="the first attempt's processes")
    workers.start(1)
    first = steps_of(run)["long"]
    assert first.state == StepState.RUNNING
    victim = worker_proc(workers, first)
    assert victim is workers.procs[0]
    orphans = child_pids(victim.pid)  # the step's shell, and RQ's scheduler if this worker runs it
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    acted = tick_until(
        lambda: Transition.objects.filter(step_run=first, attempt=1, new=StepState.FAILED).exists(),
        timeout=60,
        message="the reconciler to fail the lost attempt",
        details=describe(run),
    )
    assert first.pk in acted["worker_lost"]
    lost = Transition.objects.get(step_run=first, attempt=1, new=StepState.FAILED)
    assert "worker lost" in lost.reason
    # The orphaned step processes (the dead worker's children) die with their attempt.
    wait_for(lambda: not pids_matching(marker), timeout=5, message="the orphaned processes to be killed")
    assert not [pid for pid in orphans if alive(pid)]

    tick_until(
        lambda: Run.objects.get(pk=run.pk).state in (RunState.SUCCEEDED, RunState.FAILED),
        timeout=60,
        message="the run to end",
        details=describe(run),
    )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, workers.logs()
    steps = steps_of(run)
    assert (steps["long"].state, steps["long"].attempt) == (StepState.SUCCEEDED, 2)
    assert steps["long"].worker != first.worker
    assert worker_proc(workers, steps["long"]).poll() is None
    assert "attempt 2 done" in log_text(steps["long"])
    assert steps["after"].state == StepState.SUCCEEDED
    assert running_transitions(steps["long"]) == {1: 1, 2: 1}


# Without a sandbox, the dead worker's step lives on until something kills it (a sandboxed one dies
# with its worker: test_sandbox.py); that something is what these tests are about.
@pytest.mark.isolation("none")
def test_sigkilled_worker_without_retries_fails_the_run(workers, alice, team, tmp_path, marker):
    workers.start(1)
    run = start_sleeper(tmp_path, marker, alice, team)
    victim = workers.procs[0]
    scheduler = [pid for pid in child_pids(victim.pid) if str(pid) not in pids_matching(marker)]
    assert len(scheduler) == 1  # the only worker of the queue runs RQ's scheduler in a child process
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # Without its worker, the scheduler ends at once (it would otherwise live on, holding the lock).
    wait_for(lambda: not alive(scheduler[0]), timeout=5, message="the dead worker's scheduler to end")

    tick_until(
        lambda: Run.objects.get(pk=run.pk).state == RunState.FAILED,
        timeout=60,
        message="the run to fail",
        details=describe(run),
    )
    step = steps_of(run)["long"]
    assert (step.state, step.attempt) == (StepState.FAILED, 1)
    assert "worker lost" in step.reason
    wait_for(lambda: not pids_matching(marker), timeout=5, message="the orphaned process to be killed")


# ---- Redis loses its data ------------------------------------------------------------------


def forget_queue(queue_name: str) -> int:
    """Delete every Redis key of this test's queue and jobs, as a flush would (others' keys stay)."""
    queue = queues.get_queue(queue_name)
    connection = queue.connection
    doomed = [key for key in connection.scan_iter(match=f"rq:*{queue.name}*")]
    for key in connection.scan_iter(match=f"rq:job:{queues.instance_id()}-step-*", count=1000):
        if key.endswith(b":dependents") or key.endswith(b":dependencies"):
            continue
        if connection.hget(key, "origin") == queue.name.encode():
            doomed.append(key)
    if doomed:
        connection.delete(*doomed)
    return len(doomed)


# On one worker: a_first runs for 3 s while the four x steps wait in the queue.
# a_first outlasts the reconciler's 5 s of grace for a queued step: the x steps are requeued
# before its worker, done with a_first and then `after`, would start them from the database.
BUSY_AND_WAITING = """
type: pipeline
jobs:
  a_first:
    type: command
    command: sleep 7 && echo first
    outputs:
      out: {type: uri_folder}
  after:
    type: command
    command: echo after
    inputs:
      x: ${{parent.jobs.a_first.outputs.out}}
""" + "".join(f"  x{i}:\n    type: command\n    command: echo x{i}\n" for i in range(4))


def test_redis_losing_queued_jobs_is_repaired_by_the_reconciler(workers, alice, team, tmp_path):
    workers.start(1)
    run = start_run(tmp_path, BUSY_AND_WAITING, alice, team)
    # One worker: while it runs a_first, the four x steps wait in Redis, and Redis loses them.
    wait_for(lambda: steps_of(run)["a_first"].state == StepState.RUNNING, message="a_first to start")
    assert {steps_of(run)[f"x{i}"].state for i in range(4)} == {StepState.QUEUED}
    assert forget_queue(workers.queue) >= 4
    assert queues.get_queue(workers.queue).count == 0

    acted = tick_until(
        lambda: Run.objects.get(pk=run.pk).state in (RunState.SUCCEEDED, RunState.FAILED),
        timeout=60,
        message="the run to end",
        details=describe(run),
    )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, workers.logs()
    steps = steps_of(run)
    assert {s.name for s in steps.values() if s.pk in acted["requeued"]} >= {f"x{i}" for i in range(4)}
    for step in steps.values():
        assert (step.state, step.attempt) == (StepState.SUCCEEDED, 1)
        assert running_transitions(step) == {1: 1}, step.name
    assert "Traceback" not in workers.logs()


# ---- duplicate delivery ---------------------------------------------------------------------


def test_a_step_delivered_four_times_executes_once(workers, alice, team, tmp_path):
    executions = tmp_path / "executions.txt"
    run = start_run(
        tmp_path,
        f"""
        type: pipeline
        jobs:
          once:
            type: command
            command: echo "$STEPWISE_ATTEMPT" >> {executions} && sleep 1
        """,
        alice,
        team,
    )
    # No worker yet: the step waits in Redis; deliver it three more times, two under other job ids.
    step = steps_of(run)["once"]
    assert step.state == StepState.QUEUED
    queues.enqueue_steps([step, step])
    queue = queues.get_queue(step.queue)
    for suffix in ("dup-a", "dup-b"):
        queue.enqueue(queues.JOB_FUNC, args=queues.job_args(step), job_id=f"{queues.job_id(step)}-{suffix}")
    assert queue.count >= 3
    workers.start(2)
    run = wait_run(run)
    wait_for(lambda: queue.count == 0 and not queue.started_job_registry.count, message="every delivery handled")

    assert run.state == RunState.SUCCEEDED
    step.refresh_from_db()
    assert (step.state, step.attempt) == (StepState.SUCCEEDED, 1)
    assert executions.read_text().splitlines() == ["1"]
    assert running_transitions(step) == {1: 1}
    # Every delivery ended cleanly (the losers return early), none as a failed job.
    for job_id in (queues.job_id(step), queues.job_id(step) + "-dup-a", queues.job_id(step) + "-dup-b"):
        assert Job.fetch(job_id, connection=queue.connection).get_status() == "finished"


# ---- fencing a frozen worker --------------------------------------------------------------


def test_a_frozen_worker_cannot_change_anything_after_its_attempt_is_fenced(workers, alice, team, tmp_path, settings):
    settings.STEPWISE_RETRY_BACKOFF_S = 0
    workers.start(1)
    # Attempt 1 logs, then (while its worker is frozen) logs more, writes its output and exits 0.
    run = start_run(
        tmp_path,
        """
        type: pipeline
        jobs:
          work:
            type: command
            command: >-
              python -c "import os, sys, time; n = os.environ['STEPWISE_ATTEMPT'];
              print('attempt', n, 'started', flush=True); time.sleep(3 if n == '1' else 0);
              [print('attempt', n, 'late line', i) for i in range(100)];
              open(sys.argv[1] + '/who.txt', 'w').write('attempt ' + n)" ${{outputs.out}}
            retry_settings:
              max_retries: 1
            outputs:
              out: {type: uri_folder}
        """,
        alice,
        team,
    )
    first = wait_for(
        lambda: (s := steps_of(run)["work"]).state == StepState.RUNNING and "attempt 1 started" in log_text(s) and s,
        message="attempt 1 to log",
    )
    frozen = workers.procs[0]
    workers.start(1)
    # Freeze it just after a heartbeat committed, not inside a transaction (which would hold
    # SQLite's write lock, or the step's row lock, for as long as it is frozen).
    beat = StepRun.objects.get(pk=first.pk).heartbeat_at
    wait_for(lambda: StepRun.objects.get(pk=first.pk).heartbeat_at != beat, interval=0.01, message="a heartbeat")
    frozen.send_signal(signal.SIGSTOP)
    try:
        tick_until(
            lambda: Run.objects.get(pk=run.pk).state in (RunState.SUCCEEDED, RunState.FAILED),
            timeout=90,
            message="attempt 2 to finish the run",
            details=describe(run),
        )
        logs_before = list(LogChunk.objects.filter(step_run=first, attempt=1).values_list("pk", "text"))
        transitions_before = list(Transition.objects.filter(step_run=first).values_list("pk", flat=True))
    finally:
        frozen.send_signal(signal.SIGCONT)
    # The frozen worker wakes up, reads the rest of attempt 1's output, and finds itself fenced.
    job = Job.fetch(queues.job_id(first), connection=queues.get_queue(workers.queue).connection)
    wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=30, message="the stale attempt to end")
    assert job.return_value() == "superseded or canceled while running"

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    step = steps_of(run)["work"]
    assert (step.state, step.attempt, step.exit_code) == (StepState.SUCCEEDED, 2, 0)
    assert step.worker != first.worker
    lost = Transition.objects.get(step_run=step, attempt=1, new=StepState.FAILED)
    assert "worker lost" in lost.reason
    # Nothing of attempt 1 after the fence: no state change, no log line, no output.
    assert list(Transition.objects.filter(step_run=step).values_list("pk", flat=True)) == transitions_before
    assert list(LogChunk.objects.filter(step_run=step, attempt=1).values_list("pk", "text")) == logs_before
    assert "attempt 1 late line" not in log_text(step)
    assert "attempt 2 late line 99" in log_text(step)
    output = StepOutput.objects.get(step_run=step, name="out")
    assert (artifact_path(output.artifact) / "who.txt").read_text() == "attempt 2"
    assert running_transitions(step) == {1: 1, 2: 1}


# ---- a broken artifact store -----------------------------------------------------------------


def failed_by_the_store(run: Run, reason: str) -> StepRun:
    """The run's one step `make` failed storing its outputs, with `reason`, and nothing was registered."""
    run = wait_run(run)
    step = steps_of(run)["make"]
    assert run.state == RunState.FAILED
    assert step.state == StepState.FAILED
    assert "artifact store" in step.reason and reason in step.reason, step.reason
    assert not StepOutput.objects.filter(step_run__run=run).exists()
    assert not Artifact.objects.exists()
    return step


@pytest.fixture
def read_only_store(settings, tmp_path, workers):
    store = tmp_path / "read-only-store"
    store.mkdir()
    store.chmod(stat.S_IRUSR | stat.S_IXUSR)
    settings.STEPWISE_ARTIFACTS = str(store)
    if os.geteuid() == 0:
        # Root writes anywhere: drop the capabilities that let it ignore permissions.
        workers.prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    yield store
    store.chmod(stat.S_IRWXU)


# The workers run without the capabilities (or inside a user namespace) that the sandbox needs:
# these tests are about the artifact store, written by the worker itself.
@pytest.mark.isolation("none")
def test_an_unwritable_store_fails_the_step_and_registers_nothing(workers, alice, team, tmp_path, read_only_store):
    workers.start(1)
    yaml_text = """
        type: pipeline
        jobs:
          make:
            type: command
            command: echo data > ${{outputs.out}}/data.txt
            outputs:
              out: {type: uri_folder}
        """
    failed_by_the_store(start_run(tmp_path, yaml_text, alice, team), "Permission denied")
    assert list(read_only_store.iterdir()) == []


@pytest.fixture
def full_store(settings, tmp_path, workers):
    """The workers see a 64 KiB tmpfs as the artifact store, in a mount namespace of their own
    (nothing is mounted for the rest of the machine, and it vanishes with them)."""
    store = tmp_path / "small-store"
    store.mkdir()
    settings.STEPWISE_ARTIFACTS = str(store)
    mount = f'mount -t tmpfs -o size=64k stepwise-test {store} && exec "$@"'
    workers.prefix = ["unshare", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", mount, "--"]
    return store


@pytest.mark.isolation("none")
def test_a_full_disk_fails_the_step_with_the_reason_and_registers_nothing(workers, alice, team, tmp_path, full_store):
    workers.start(1)
    yaml_text = """
        type: pipeline
        jobs:
          make:
            type: command
            command: >-
              echo small > ${{outputs.small}}/data.txt &&
              head -c 1000000 /dev/urandom > ${{outputs.big}}/data.bin
            outputs:
              small: {type: uri_folder}
              big: {type: uri_folder}
        """
    failed_by_the_store(start_run(tmp_path, yaml_text, alice, team), "No space left on device")
    assert "Traceback" not in workers.logs()


def test_a_bad_second_output_leaves_no_half_registered_first_output(workers, alice, team, tmp_path):
    workers.start(1)
    run = wait_run(
        start_run(
            tmp_path,
            """
            type: pipeline
            jobs:
              make:
                type: command
                command: echo good > ${{outputs.good}}/data.txt
                outputs:
                  good: {type: uri_folder}
                  missing: {type: uri_file}
            """,
            alice,
            team,
        )
    )
    step = steps_of(run)["make"]
    assert step.state == StepState.FAILED
    assert "missing" in step.reason, step.reason
    assert not StepOutput.objects.filter(step_run__run=run).exists()
    assert not Artifact.objects.exists()


@pytest.mark.isolation("none")
def test_a_step_canceled_while_its_worker_is_dead_has_its_processes_killed(workers, alice, team, tmp_path, marker):
    workers.start(1)
    run = start_sleeper(tmp_path, marker, alice, team)
    victim = workers.procs[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    run_cancel(run=Run.objects.get(pk=run.pk))
    assert wait_run(run, timeout=10).state == RunState.CANCELED
    assert pids_matching(marker), "nobody is left to stop the step: its process still runs"

    acted = tick_until(lambda: not pids_matching(marker), timeout=60, message="the reconciler to reap the process")
    assert steps_of(run)["long"].pk in acted["reaped"]
