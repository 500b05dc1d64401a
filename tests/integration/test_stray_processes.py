"""No user process outlives its step: what a step leaves running in the background, detaches
with setsid, or leaves behind a dead worker is killed, with real workers and real signals."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from rq import Worker

from runs import queues
from runs.models import ComputeTarget, Isolation, RunState, StepState
from tests.integration.conftest import pids_matching, staged_etc, wait_for
from tests.integration.test_execution import log_text, steps_of, wait_run
from tests.integration.test_faults import alive, start_run, start_sleeper

pytestmark = pytest.mark.integration


def pending_signals(pid: int) -> int:
    """The signals sent to pid and not yet acted on (its own and its thread group's)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)


def one_step(command: str) -> str:
    return f"type: pipeline\njobs:\n  step:\n    type: command\n    command: {command}\n"


@pytest.mark.parametrize(
    "detach",
    [
        pytest.param("{sleeper} &", id="background-job-holding-the-pipe"),
        pytest.param("setsid {sleeper} &", id="own-session-holding-the-pipe"),
        pytest.param("setsid {sleeper} >/dev/null 2>&1 </dev/null &", id="own-session-detached"),
        pytest.param("(setsid nohup {sleeper} >/dev/null 2>&1 &);", id="double-fork-daemon"),
    ],
)
@pytest.mark.parametrize("isolation", [Isolation.SANDBOX, Isolation.NONE])
def test_what_a_step_leaves_running_is_killed_when_it_ends(workers, alice, team, tmp_path, marker, detach, isolation):
    ComputeTarget.objects.update(isolation=isolation)
    workers.start(1)
    # A `sleep 600` named after the marker, so that the test finds it.
    detach = detach.format(sleeper=f"bash -c 'exec -a {marker} sleep 600'")
    run = start_run(tmp_path, one_step(f"{detach} echo started"), alice, team)

    run = wait_run(run, timeout=30)
    assert run.state == RunState.SUCCEEDED, steps_of(run)["step"].reason
    step = steps_of(run)["step"]
    assert step.state == StepState.SUCCEEDED
    assert not pids_matching(marker), "a process of the step outlived it"
    log = log_text(step)
    assert "started" in log
    if isolation == Isolation.NONE:
        assert "[stepwise] stopped" in log and "left running" in log
    # In the sandbox they end with its PID namespace, as the step's shell ends, unseen by the worker.


def zombie_children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            state = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[0]
            if state == "Z":
                found.append(int(child))
    return found


def test_a_worker_reaps_what_its_sandboxes_leave_to_it(workers, alice, team, tmp_path):
    # bubblewrap's own exit can come before its PID namespace's init has died: the init then
    # becomes the worker's child (a subreaper), to reap, or zombies pile up step after step.
    (worker,) = workers.start(1)
    steps = "".join(f"  s{i}:\n    type: command\n    command: sleep 0.2 & echo {i}\n" for i in range(4))
    run = start_run(tmp_path, f"type: pipeline\njobs:\n{steps}", alice, team)
    assert wait_run(run, timeout=60).state == RunState.SUCCEEDED
    wait_for(lambda: not zombie_children(worker.pid), timeout=10, message="no zombie child of the worker")


def test_a_worker_starting_up_reaps_what_its_sandbox_check_left_to_it(workers):
    (worker,) = workers.start(1)
    # The worker checks that the sandbox starts, then copies /etc, before it takes a job.
    wait_for(lambda: staged_etc(worker.pid), message="the worker's copy of /etc")
    wait_for(lambda: not zombie_children(worker.pid), timeout=10, message="no zombie child of the worker")


def test_a_canceled_step_loses_its_detached_processes_too(workers, alice, team, tmp_path, marker):
    from runs.services import run_cancel

    workers.start(1)
    run = start_run(
        tmp_path,
        one_step(f"setsid bash -c 'exec -a {marker} sleep 600' >/dev/null 2>&1 </dev/null & sleep 600"),
        alice,
        team,
    )
    wait_for(lambda: pids_matching(marker), message="the detached process")
    run_cancel(run=run)
    assert wait_run(run, timeout=30).state == RunState.CANCELED
    wait_for(lambda: not pids_matching(marker), timeout=10, message="the detached process to be killed")


@pytest.mark.isolation("none")  # a sandboxed step dies with its worker (test_sandbox.py)
def test_a_new_worker_kills_what_a_dead_worker_left_on_its_host(workers, alice, team, tmp_path, marker):
    workers.start(1)
    start_sleeper(tmp_path, marker, alice, team)
    (orphan,) = (int(pid) for pid in pids_matching(marker))
    victim = workers.procs[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # Reaped, the worker has been through its exit: anything tied to its death (a parent-death
    # signal, a kill of its process group) has been sent by now, so it would be pending here.
    assert alive(orphan) and not pending_signals(orphan), "only the next worker should kill it (no reconciler here)"

    workers.start(1)
    wait_for(lambda: not alive(orphan), timeout=20, message="the new worker to kill the orphan")
    wait_for(lambda: "left by a dead worker" in workers.logs(), timeout=5, message="the worker to say so")


@pytest.mark.isolation("none")  # a sandboxed step dies with its worker (test_sandbox.py)
def test_a_new_worker_leaves_a_live_workers_steps_alone(workers, alice, team, tmp_path, marker):
    workers.start(1)
    start_sleeper(tmp_path, marker, alice, team)
    (step_pid,) = (int(pid) for pid in pids_matching(marker))
    workers.start(1)
    # A worker registers with RQ after its start-up sweep for orphans.
    queue = queues.get_queue(workers.queue)
    wait_for(lambda: Worker.count(queue=queue) == 2, timeout=20, message="the second worker to be up")
    assert alive(step_pid)
    assert "left by a dead worker" not in workers.logs()


def test_a_new_worker_leaves_another_installs_orphans_to_it(workers, tmp_path, marker):
    import os
    import subprocess

    from runs import processes

    # A step process of another install on this host whose worker (pid 1, started at another
    # time) is gone: that install's reconciler reaps and records it, not our workers.
    env = {**os.environ, processes.WORKER_ENV: "1:0:another-install-0123abcd", processes.ATTEMPT_ENV: "x" * 32}
    other = subprocess.Popen(["bash", "-c", f"exec -a {marker} sleep 600"], env=env, start_new_session=True)
    try:
        workers.start(1)
        queue = queues.get_queue(workers.queue)
        wait_for(lambda: Worker.count(queue=queue) == 1, timeout=20, message="the worker to be up")
        assert other.poll() is None, "a worker killed another install's process"
        assert "left by a dead worker" not in workers.logs()
    finally:
        other.kill()
        other.wait()


def test_the_children_read_from_each_thread_are_those_a_scan_of_proc_finds():
    """Children are listed by the thread that started them: one from another thread (the steps'
    network namespace thread), one exited (a zombie) and one running all count."""
    import subprocess
    import threading

    from runs import processes

    running = subprocess.Popen(["sleep", "30"])
    exited = subprocess.Popen(["true"])
    from_thread: list[subprocess.Popen] = []
    thread = threading.Thread(target=lambda: from_thread.append(subprocess.Popen(["sleep", "30"])))
    thread.start()
    thread.join()  # its children pass to the thread group, once the kernel has ended the thread:
    # join() returns as its Python code ends, and a scan while the thread exits may miss its child.
    wait_for(lambda: not Path(f"/proc/self/task/{thread.native_id}").exists(), message="the thread's end")
    try:
        wait_for(lambda: processes._children().get(exited.pid) == "Z", message="the zombie")
        children = processes._children()
        assert {running.pid, exited.pid, from_thread[0].pid} <= children.keys()
        assert children[running.pid] != "Z" and children[from_thread[0].pid] != "Z"
        assert children.keys() == processes._children_by_scan().keys()
    finally:
        for proc in (running, exited, *from_thread):
            proc.kill()
            proc.wait()
