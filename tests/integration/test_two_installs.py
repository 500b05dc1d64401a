"""Two installs on one Redis: each with its own database, workers and reconciler, and a compute
target of the same queue name. Each install's steps run once, on its own workers, and neither
install's reconciler re-enqueues anything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.db import connection
from rq import Worker

from pipelines_ui.models import Role, Team
from runs import queues, reconciler
from runs.models import ComputeTarget, Isolation, RunState, StepState, Transition
from runs.services import run_create
from tests.conftest import database_url, make_user
from tests.integration.conftest import ROOT, Workers, wait_for
from tests.integration.test_execution import import_yaml, wait_run

pytestmark = pytest.mark.integration

LEAVES = 20
WORKERS_PER_INSTALL = 2


def fan_out(install: str, folder: Path) -> str:
    """A root that waits for the file `go`, then 20 steps that each append their own line to the
    install's markers file: several lines for a step, or another install's line, would show there."""
    markers, ready, go = folder / "markers.txt", folder / "root-running", folder / "go"
    leaves = "".join(
        f"""
  s{i:02}:
    type: command
    command: test -d ${{{{inputs.x}}}} && echo "{install} s{i:02} $STEPWISE_ATTEMPT" >> {markers}
    inputs:
      x: ${{{{parent.jobs.root.outputs.out}}}}"""
        for i in range(LEAVES)
    )
    return f"""
type: pipeline
display_name: fan-out-{install}
jobs:
  root:
    type: command
    command: >-
      echo "{install} root $STEPWISE_ATTEMPT" >> {markers} && touch {ready} &&
      while [ ! -e {go} ]; do sleep 0.05; done
    outputs:
      out: {{type: uri_folder}}{leaves}
"""


def expected_markers(install: str) -> list[str]:
    return sorted([f"{install} root 1"] + [f"{install} s{i:02} 1" for i in range(LEAVES)])


# Run in install B by `manage.py shell`: its setup, then what the test checks afterwards.
B_SETUP = """
import json
from django.contrib.auth import get_user_model
from pipelines_ui.models import Role, Team
from runs import queues
from runs.models import ComputeTarget, Isolation
ComputeTarget.objects.all().delete()
ComputeTarget.objects.create(name="test-target", aliases=["cpu-cluster"], queue={queue!r}, is_default=True,
                             isolation=Isolation.NONE)
team = Team.objects.create(name="Data Science")
user = get_user_model().objects.create_user(username="alice", password="pw-alice")
Membership.objects.create(team=team, user=user, role=Role.ADMIN)
print(json.dumps({{"instance": queues.instance_id(), "queue": queues.get_queue({queue!r}).name}}))
"""

B_INSPECT = """
import json
from runs import reconciler
from runs.models import StepRun, StepState, Transition
steps = StepRun.objects.filter(run_id={run_id})
print(json.dumps({{
    "ticks": [reconciler.tick() for _ in range(3)],
    "steps": {{
        s.name: {{
            "state": s.state,
            "worker": s.worker,
            "running": Transition.objects.filter(step_run=s, new=StepState.RUNNING).count(),
        }}
        for s in steps
    }},
}}))
"""


class Install:
    """One install's processes, pointed at its database and folders, sharing the test's Redis."""

    def __init__(self, name: str, folder: Path, db_url: str, queue: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.name, self.folder, self.db_url = name, folder, db_url
        self.workers = Workers(queue, folder)
        # Its own database, and its own folders, as another checkout has.
        self.workers.extra_env.update(
            DATABASE_URL=db_url,
            STEPWISE_ARTIFACTS=str(folder / "artifacts"),
            STEPWISE_ARTIFACTS_CACHE=str(folder / "cache"),
            STEPWISE_WORKDIR=str(folder / "work"),
        )
        self.procs: list[subprocess.Popen] = []

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.workers.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"{self.name}: manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def shell(self, code: str) -> dict:
        return json.loads(self.manage("shell", "-c", textwrap.dedent(code)).strip().splitlines()[-1])

    def start(self, *args: str, log: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.workers.env(),
            stdout=open(self.folder / f"{log}.out", "wb"),  # noqa: SIM115 - closed with the process
            stderr=open(self.folder / f"{log}.log", "wb"),  # noqa: SIM115
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        self.workers.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def second_database(transactional_db, tmp_path):
    """The database of install B: PostgreSQL beside the test database, or a second SQLite file."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'install-b.sqlite3'}"
        return
    name = f"{connection.settings_dict['NAME']}_b{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{database_url().rpartition('/')[0]}/{name}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def installs(second_database, tmp_path):
    # Both installs name their compute target's queue alike (unique to this test, so that jobs
    # left by an earlier session in this test database's namespace stay out of it).
    shared = f"shared-{uuid.uuid4().hex[:8]}"
    a = Install("A", tmp_path / "a", database_url(), shared)
    b = Install("B", tmp_path / "b", second_database, shared)
    yield a, b
    a.stop()
    b.stop()


def test_two_installs_on_one_redis_run_only_their_own_steps(installs):
    a, b = installs
    shared = a.workers.queue

    # Install A is this test's database; install B a second one, migrated as a new install is.
    ComputeTarget.objects.all().delete()
    ComputeTarget.objects.create(
        name="test-target", aliases=["cpu-cluster"], queue=shared, is_default=True, isolation=Isolation.NONE
    )
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team, Role.ADMIN)
    b.manage("migrate", "--no-input")
    b_info = b.shell(B_SETUP.format(queue=shared))
    a_queue = queues.get_queue(shared)
    assert b_info["instance"] != queues.instance_id()
    assert b_info["queue"] != a_queue.name and b_info["queue"].endswith(f".{shared}")

    reconcilers = []
    for install in (a, b):
        install.workers.start(WORKERS_PER_INSTALL)
        reconcilers.append(install.start("reconcile", "--loop", "--interval", "0.5", log="reconciler"))
    a_pids = {p.pid for p in a.workers.procs}
    b_pids = {p.pid for p in b.workers.procs}

    def listening(queue_name: str) -> set[int]:
        return {w.pid for w in Worker.all(connection=a_queue.connection) if queue_name in w.queue_names()}

    wait_for(
        lambda: listening(a_queue.name) == a_pids and listening(b_info["queue"]) == b_pids,
        message="each install's workers on its own queue",
        details=lambda: (listening(a_queue.name), listening(b_info["queue"]), a.workers.logs(), b.workers.logs()),
    )

    # Both runs at once: B's from its command line, A's as its web server would start it. Their
    # roots wait until both run, so that the 40 leaves are enqueued on both queues together.
    b_yaml = b.folder / "fan-out" / "pipeline.yml"
    b_yaml.parent.mkdir()
    b_yaml.write_text(fan_out("B", b.folder))
    b_cli = b.start("pipelines", "run", str(b_yaml), "--team", "Data Science", "--user", "alice", "--json", log="cli")
    run = run_create(version=import_yaml(a.folder, fan_out("A", a.folder), alice, team), user=alice)
    wait_for(
        lambda: (a.folder / "root-running").exists() and (b.folder / "root-running").exists(),
        timeout=60,
        message="both roots to run",
        details=lambda: (b.log("cli"), a.workers.logs(), b.workers.logs()),
    )
    for install in (a, b):
        (install.folder / "go").touch()

    run = wait_run(run, timeout=120)
    b_cli.wait(timeout=120)
    b_result = json.loads((b.folder / "cli.out").read_text())
    assert run.state == RunState.SUCCEEDED
    assert b_cli.returncode == 0 and b_result["state"] == "succeeded", b.log("cli")

    # Every step of each install ran once, on one of its own workers.
    assert sorted((a.folder / "markers.txt").read_text().splitlines()) == expected_markers("A")
    assert sorted((b.folder / "markers.txt").read_text().splitlines()) == expected_markers("B")
    a_steps = list(run.steps.all())
    assert len(a_steps) == LEAVES + 1
    for step in a_steps:
        assert step.state == StepState.SUCCEEDED
        assert Transition.objects.filter(step_run=step, new=StepState.RUNNING).count() == 1, step.name
        assert int(step.worker.rpartition(":")[2]) in a_pids, step.name
    b_seen = b.shell(B_INSPECT.format(run_id=b_result["run"]))
    assert len(b_seen["steps"]) == LEAVES + 1
    for name, step in b_seen["steps"].items():
        assert step["state"] == StepState.SUCCEEDED and step["running"] == 1, (name, step)
        assert int(step["worker"].rpartition(":")[2]) in b_pids, (name, step)

    # No reconciler found a job of its install gone (as when a foreign worker takes it), neither
    # while the runs ran nor now; no worker saw a job of the other install.
    for proc in reconcilers:
        proc.terminate()
        proc.wait(timeout=10)
    for install in (a, b):
        assert "requeued" not in install.log("reconciler"), install.log("reconciler")
        assert "refused" not in install.workers.logs(), install.workers.logs()
    assert not any(any(reconciler.tick().values()) for _ in range(3))
    assert not any(any(tick.values()) for tick in b_seen["ticks"])


def test_a_worker_leaves_a_job_of_another_install_alone(workers, compute_target, alice, team, tmp_path):
    # A job that reached this install's queue though made by another install, whose step run id
    # is a queued step of this install: the worker must not run this install's step for it.
    run = run_create(
        version=import_yaml(
            tmp_path, "type: pipeline\njobs:\n  only:\n    type: command\n    command: echo hi\n", alice, team
        ),
        user=alice,
    )
    step = run.steps.get()
    queue = queues.get_queue(compute_target.queue)
    queue.empty()
    foreign = queue.enqueue(queues.JOB_FUNC, args=(step.pk, step.attempt, "elsewhere"), job_id="elsewhere-step-1-1")
    workers.start(1)

    wait_for(lambda: foreign.get_status(refresh=True) == "finished", message="the worker to take the job")
    assert foreign.return_value().startswith("refused")
    step.refresh_from_db()
    assert step.state == StepState.QUEUED and not Transition.objects.filter(step_run=step, new=StepState.RUNNING)
    assert "refused job for step run" in workers.logs() and "'elsewhere'" in workers.logs()
