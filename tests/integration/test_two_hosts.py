"""Workers on two "hosts": separate processes with their own working folders, artifact caches,
TMPDIR and var folder, sharing only what machines share in production: the database, Redis and
an S3 artifact store (a moto server here)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from runs.executor import attempt_workdir
from runs.models import Run, RunState, StepOutput, StepRun, StepState, Worker, WorkerState
from runs.worker_status import Status, worker_drain, worker_undrain, workers_page
from tests.integration.conftest import Workers, wait_for
from tests.integration.test_execution import log_text, steps_of, wait_run
from tests.integration.test_faults import start_run
from tests.integration.test_s3_store import s3  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

# B and C wait at a gate the test opens once both run, so they overlap by construction.
GATE = "until [ -e go ]; do sleep 0.05; done"

DIAMOND = f"""
type: pipeline
jobs:
  a:
    type: command
    command: printf from-a > ${{{{outputs.out}}}}/value.txt
    outputs:
      out: {{type: uri_folder}}
  b:
    type: command
    command: >-
      {GATE}; printf "b:%s" "$(cat ${{{{inputs.x}}}}/value.txt)" > ${{{{outputs.out}}}}/value.txt
    inputs:
      x: ${{{{parent.jobs.a.outputs.out}}}}
    outputs:
      out: {{type: uri_folder}}
  c:
    type: command
    command: >-
      {GATE}; printf "c:%s" "$(cat ${{{{inputs.x}}}}/value.txt)" > ${{{{outputs.out}}}}/value.txt
    inputs:
      x: ${{{{parent.jobs.a.outputs.out}}}}
    outputs:
      out: {{type: uri_folder}}
  d:
    type: command
    command: echo "$(cat ${{{{inputs.left}}}}/value.txt) $(cat ${{{{inputs.right}}}}/value.txt)"
    inputs:
      left: ${{{{parent.jobs.b.outputs.out}}}}
      right: ${{{{parent.jobs.c.outputs.out}}}}
"""

# The first step waits at the gate; each next one takes its input from the one before.
CHAIN = f"""
type: pipeline
jobs:
  first:
    type: command
    command: {GATE}; echo 1 > ${{{{outputs.out}}}}
    outputs:
      out: {{type: uri_file}}
  second:
    type: command
    command: echo "$(cat ${{{{inputs.x}}}}) 2" > ${{{{outputs.out}}}}
    inputs:
      x: ${{{{parent.jobs.first.outputs.out}}}}
    outputs:
      out: {{type: uri_file}}
  third:
    type: command
    command: cat ${{{{inputs.x}}}}
    inputs:
      x: ${{{{parent.jobs.second.outputs.out}}}}
"""


@dataclass
class Host:
    """One machine's worker: its own folders; the database, Redis and S3 come from the test."""

    name: str
    root: Path
    pool: Workers

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def worker_name(self) -> str:
        (proc,) = self.pool.procs
        return Worker.objects.get(pid=proc.pid).name

    def start(self) -> None:
        self.pool.start(1)

    def record(self) -> Worker:
        (proc,) = self.pool.procs
        return Worker.objects.get(pid=proc.pid)

    def has_in_cache(self, sha256: str) -> bool:
        return (self.cache / "objects" / sha256[:2] / sha256).is_dir()


@pytest.fixture
def hosts(compute_target, tmp_path, s3):  # noqa: F811 - the fixture
    secret_key = secrets.token_urlsafe(50)
    made = []
    for name in ("host-a", "host-b"):
        root = tmp_path / name
        (root / "tmp").mkdir(parents=True)
        pool = Workers(compute_target.queue, root)
        pool.extra_env.update(
            STEPWISE_WORKDIR=str(root / "work"),
            STEPWISE_ARTIFACTS_CACHE=str(root / "cache"),
            STEPWISE_VAR=str(root / "var"),
            TMPDIR=str(root / "tmp"),
            # Shared by every machine of an install (secret inputs are encrypted with it).
            SECRET_KEY=secret_key,
        )
        made.append(Host(name=name, root=root, pool=pool))
    yield made
    for host in made:
        host.pool.stop()


def start_hosts(hosts: list[Host]) -> None:
    for host in hosts:
        host.start()
    pids = {p.pid for host in hosts for p in host.pool.procs}
    wait_for(
        lambda: set(Worker.objects.filter(state=WorkerState.IDLE).values_list("pid", flat=True)) >= pids,
        message="both workers to start",
        details=lambda: "\n".join(host.pool.logs() for host in hosts),
    )


def host_of(hosts: list[Host], step: StepRun) -> Host:
    (host,) = [h for h in hosts if h.worker_name == step.worker]
    return host


def open_gate(workdir: Path, step: StepRun) -> None:
    """Let a step waiting at GATE go on: a file in its folder, under the working folder of its host."""
    code = workdir / attempt_workdir(step).relative_to(settings.STEPWISE_WORKDIR) / "code"
    # A step is running before its folder is made.
    wait_for(code.is_dir, message=f"the folder of {step.name}")
    (code / "go").write_text("")


def wait_running(run: Run, *names: str) -> dict[str, StepRun]:
    def running():
        steps = steps_of(run)
        return steps if all(steps[n].state == StepState.RUNNING for n in names) else None

    return wait_for(running, message=f"{', '.join(names)} to run", details=lambda: steps_of(run))


def output_sha(run: Run, step: str) -> str:
    return StepOutput.objects.get(step_run__run=run, step_run__name=step).artifact.sha256


def test_a_diamond_runs_on_two_hosts_that_share_only_the_database_redis_and_s3(hosts, s3, alice, team, tmp_path):  # noqa: F811
    assert settings.STEPWISE_ARTIFACTS.startswith("s3://")
    start_hosts(hosts)
    run = start_run(tmp_path, DIAMOND, alice, team)

    # A worker runs one step at a time: B and C running at once are on the two hosts.
    steps = wait_running(run, "b", "c")
    assert {host_of(hosts, steps["b"]).name, host_of(hosts, steps["c"]).name} == {"host-a", "host-b"}
    open_gate(host_of(hosts, steps["b"]).workdir, steps["b"])
    open_gate(host_of(hosts, steps["c"]).workdir, steps["c"])
    run = wait_run(run)

    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(run).items()}
    steps = steps_of(run)
    assert {s.state for s in steps.values()} == {StepState.SUCCEEDED}
    # D saw both branches' outputs, one of them made on the other host.
    assert "b:from-a c:from-a" in log_text(steps["d"])
    d_host = host_of(hosts, steps["d"])
    other = next(h for h in hosts if h is not d_host)
    made_elsewhere = next(n for n in ("b", "c") if host_of(hosts, steps[n]) is other)
    # ...which reached D's host through S3: no folder of one host is another's.
    assert s3.fs.exists(s3.marker(output_sha(run, made_elsewhere)))
    assert d_host.has_in_cache(output_sha(run, made_elsewhere))
    assert not d_host.workdir.is_relative_to(other.root) and d_host.cache != other.cache

    # Each worker counted the steps it ran, chains included.
    ran = {h.worker_name: sum(1 for s in steps.values() if s.worker == h.worker_name) for h in hosts}
    assert sum(ran.values()) == 4
    wait_for(
        lambda: {h.worker_name: h.record().steps_done for h in hosts} == ran,
        message="the workers to count their steps",
        details=lambda: ({h.worker_name: h.record().steps_done for h in hosts}, ran),
    )


# A worker asked to stop or drain during a step starts none of those its success made ready.
def test_a_drained_worker_finishes_its_step_and_the_next_ones_go_to_the_other(hosts, alice, team, tmp_path):
    start_hosts(hosts)
    run = start_run(tmp_path, CHAIN, alice, team)
    first = wait_running(run, "first")["first"]
    drained = host_of(hosts, first)
    other = next(h for h in hosts if h is not drained)

    assert worker_drain(worker=drained.record(), user=alice)
    open_gate(drained.workdir, first)
    run = wait_run(run)

    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(run).items()}
    steps = steps_of(run)
    # The step it ran when asked finished there; none after it did (not even the chain it made ready).
    assert steps["first"].worker == drained.worker_name
    assert steps["second"].worker == other.worker_name
    assert steps["third"].worker == other.worker_name
    assert "1 2" in log_text(steps["third"])

    # Still alive, beating, taking nothing: drained, until undrained.
    def status(host: Host) -> str | None:
        rows = {row.worker.pk: row.status for row in workers_page(user=alice).live}
        return rows.get(host.record().pk)

    wait_for(lambda: status(drained) == Status.DRAINED, message="the worker to show as drained")
    assert drained.record().steps_done == 1
    assert drained.pool.procs[0].poll() is None

    # The other way round: the undrained worker takes everything again.
    assert worker_drain(worker=other.record(), user=alice)
    assert worker_undrain(worker=drained.record())
    again = start_run(tmp_path, CHAIN, alice, team, force_rerun=True)
    open_gate(drained.workdir, wait_running(again, "first")["first"])
    again = wait_run(again)
    assert again.state == RunState.SUCCEEDED
    assert {s.worker for s in steps_of(again).values()} == {drained.worker_name}
