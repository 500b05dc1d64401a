"""`manage.py serve` (what `make run` runs) under fire: the real command, its real children
(daphne, step workers, the reconciler, a private redis-server), real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from runs.models import RunState, StepState, Transition
from runs.services import run_create
from tests.conftest import free_port
from tests.integration.conftest import ROOT, Workers, pids_matching, wait_for
from tests.integration.test_execution import import_yaml, steps_of, wait_run

pytestmark = pytest.mark.integration

# Attempt 1 of `a` and `b` hangs until its worker is killed; the retries end at once.
SURVIVOR = """
type: pipeline
jobs:
  a:
    type: command
    command: if [ "$STEPWISE_ATTEMPT" = 1 ]; then exec -a {marker}-a sleep 600; fi; echo a done > ${{{{outputs.out}}}}/a
    retry_settings: {{max_retries: 1}}
    outputs:
      out: {{type: uri_folder}}
  b:
    type: command
    command: if [ "$STEPWISE_ATTEMPT" = 1 ]; then exec -a {marker}-b sleep 600; fi; echo b done > ${{{{outputs.out}}}}/b
    retry_settings: {{max_retries: 1}}
    outputs:
      out: {{type: uri_folder}}
  c:
    type: command
    command: exec -a {marker}-c sleep 3
    inputs:
      a: ${{{{parent.jobs.a.outputs.out}}}}
      b: ${{{{parent.jobs.b.outputs.out}}}}
"""
HANGS = """
type: pipeline
jobs:
  hang:
    type: command
    command: exec -a {marker}-hang sleep 600
"""


# ---- processes, by /proc -------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def role(pid: int) -> str | None:
    """What a child of serve is: daphne, worker-N (its slot), reconciler, scheduler, dispatcher,
    deployments or redis-server."""
    argv = cmdline(pid)
    if "daphne" in argv:
        return "daphne"
    if "stepwise_worker" in argv and "--name" in argv:
        name = argv[argv.index("--name") + 1]  # worker-<serve pid>-<slot>[.<restarts>]
        return f"worker-{name.rpartition('-')[2].partition('.')[0]}"
    if "reconcile" in argv:
        return "reconciler"
    if "stepwise_scheduler" in argv:
        return "scheduler"
    if "stepwise_dispatcher" in argv:
        return "dispatcher"
    if "stepwise_deployments" in argv:
        return "deployments"
    if argv and argv[0].split(" ")[0].endswith("redis-server"):  # it sets its title to "redis-server HOST:PORT"
        return "redis-server"
    return None


# ---- serve -----------------------------------------------------------------------------------------


class Served:
    def __init__(self, proc: subprocess.Popen, base: str, log: Path) -> None:
        self.proc = proc
        self.base = base
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def roles(self) -> dict[str, int]:
        return {r: pid for pid in children(self.proc.pid) if (r := role(pid)) is not None}

    def page_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/accounts/login/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def replaced(self, name: str, old: int) -> int:
        """Wait for a new pid in `name`'s place: the supervisor's restart."""
        return wait_for(
            lambda: (pid := self.roles().get(name)) not in (None, old) and pid,
            timeout=10,
            message=f"a new {name}",
            details=self.output,
        )


@pytest.fixture
def serve(compute_target, tmp_path) -> Iterator:
    """Start `manage.py serve` on a free port against the test database; stopped after the test."""
    started: list[Served] = []

    def start(*, workers: int, env: dict[str, str] | None = None, ready: list[str] | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        full_env = {
            **Workers(compute_target.queue, tmp_path).env(),
            "STEPWISE_VAR": str(tmp_path / "var"),
            "PORT": str(port),
            "WORKERS": str(workers),
            **(env or {}),
        }
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--grace", "1"],
                cwd=ROOT,
                env=full_env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        served = Served(proc, f"http://127.0.0.1:{port}", log)
        started.append(served)
        expected = {
            "daphne",
            "reconciler",
            "scheduler",
            "dispatcher",
            "deployments",
            *(f"worker-{i}" for i in range(workers)),
            *(ready or []),
        }
        wait_for(
            lambda: served.page_answers() and expected <= set(served.roles()),
            timeout=60,
            message="serve to start",
            details=served.output,
        )
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            family = descendants(served.proc.pid)
            served.proc.terminate()
            try:
                served.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                for pid in family:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        print(f"---- serve log ----\n{served.output()[-5000:]}")


class PagePoller:
    """GETs the login page over and over in a thread; every failure is kept."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.answers = 0
        self.failures: list[str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stopped.is_set():
            try:
                with urllib.request.urlopen(self.served.base + "/accounts/login/", timeout=10) as response:
                    self.answers += response.status == 200
            except OSError as exc:
                self.failures.append(repr(exc))
            self.stopped.wait(0.2)

    def __enter__(self) -> PagePoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=15)


def worker_pid(step_run) -> int:
    return int(step_run.worker.rpartition(":")[2])


def lost_transition(step_run, attempt: int) -> Transition | None:
    return Transition.objects.filter(step_run=step_run, attempt=attempt, new=StepState.FAILED).first()


# ---- the tests ---------------------------------------------------------------------------------------


def test_children_killed_one_by_one_come_back_and_the_run_succeeds(serve, alice, team, tmp_path, marker):
    served = serve(workers=2)
    out = served.output()
    assert "Database: SQLite" in out or 'Database: PostgreSQL database "test_' in out
    assert f"Redis: {settings.REDIS_URL}, already running (not started by serve)" in out

    run = run_create(version=import_yaml(tmp_path, SURVIVOR.format(marker=marker), alice, team), user=alice)
    details = lambda: f"{ {s.name: (s.state, s.attempt, s.reason) for s in run.steps.all()} }\n{served.output()}"  # noqa: E731
    wait_for(
        lambda: pids_matching(f"{marker}-a") and pids_matching(f"{marker}-b"),
        timeout=60,
        message="a and b to run, one on each worker",
        details=details,
    )

    with PagePoller(served) as page:
        for name in ("a", "b"):
            step = steps_of(run)[name]
            assert (step.state, step.attempt) == (StepState.RUNNING, 1)
            victim = worker_pid(step)
            slot = role(victim)
            assert slot is not None and slot.startswith("worker-") and served.roles()[slot] == victim
            os.kill(victim, signal.SIGKILL)
            served.replaced(slot, victim)
            lost = wait_for(lambda s=step: lost_transition(s, 1), timeout=30, message=f"{name} lost", details=details)
            # Failed by serve as soon as it saw its worker die, not after the heartbeat limit.
            assert lost.reason == f"worker lost: {slot} (pid {victim}) killed by SIGKILL"
            assert f"serve: {slot} (pid {victim}) killed by SIGKILL after" in served.output()
            wait_for(
                lambda n=name: not pids_matching(f"{marker}-{n}"), timeout=10, message="the lost attempt's process"
            )

        wait_for(lambda: steps_of(run)["c"].state == StepState.RUNNING, timeout=60, message="c to run", details=details)
        reconciler = served.roles()["reconciler"]
        os.kill(reconciler, signal.SIGKILL)
        served.replaced("reconciler", reconciler)
        for name in ("scheduler", "dispatcher", "deployments"):
            victim = served.roles()[name]
            os.kill(victim, signal.SIGKILL)
            served.replaced(name, victim)
        wait_run(run, timeout=60)

    assert page.failures == [] and page.answers > 0
    assert run.state == RunState.SUCCEEDED, details()
    steps = steps_of(run)
    assert {n: (s.state, s.attempt) for n, s in steps.items()} == {
        "a": (StepState.SUCCEEDED, 2),
        "b": (StepState.SUCCEEDED, 2),
        "c": (StepState.SUCCEEDED, 1),
    }
    assert served.proc.poll() is None

    # SIGTERM stops every process, the step in flight included, and leaves no attempt running.
    hung = run_create(version=import_yaml(tmp_path, HANGS.format(marker=marker), alice, team, name="h"), user=alice)
    wait_for(lambda: pids_matching(f"{marker}-hang"), timeout=60, message="the hanging step", details=details)
    family = descendants(served.proc.pid)
    assert {int(p) for p in pids_matching(f"{marker}-hang")} <= family
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0, served.output()
    wait_for(lambda: not [pid for pid in family if alive(pid)], timeout=10, message="every process of serve to end")
    assert not pids_matching(marker)
    assert steps_of(hung)["hang"].state == StepState.FAILED
    assert "worker lost" in steps_of(hung)["hang"].reason


def test_serve_stops_everything_and_fails_when_the_web_server_dies(serve):
    served = serve(workers=1)
    family = descendants(served.proc.pid)
    daphne = served.roles()["daphne"]
    os.kill(daphne, signal.SIGKILL)
    assert served.proc.wait(timeout=60) != 0
    assert f"the web server stopped: daphne (pid {daphne}) killed by SIGKILL after" in served.output()
    wait_for(lambda: not [pid for pid in family if alive(pid)], timeout=10, message="every process of serve to end")


def test_a_private_redis_server_that_dies_is_restarted(serve):
    url = f"redis://127.0.0.1:{free_port()}/0"
    served = serve(workers=1, env={"TEST_REDIS_URL": url}, ready=["redis-server"])
    assert f"Redis: {url}, a redis-server started by serve for itself" in served.output()
    redis_pid = served.roles()["redis-server"]
    with PagePoller(served) as page:
        os.kill(redis_pid, signal.SIGKILL)
        served.replaced("redis-server", redis_pid)
    assert page.failures == []
    family = descendants(served.proc.pid)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0, served.output()
    wait_for(lambda: not [pid for pid in family if alive(pid)], timeout=10, message="every process of serve to end")
