"""Real parts: RQ worker processes running real subprocess steps against the test database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from runs.models import ComputeTarget, Isolation
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    def __init__(self, queue: str, tmp: Path):
        self.queue = queue
        self.tmp = tmp
        # Steps of a root worker run as nobody (runs/sandbox.py).
        tmp.chmod(0o777)
        self.procs: list[subprocess.Popen] = []
        # Per-test overrides of the workers' environment (set before start()).
        self.extra_env: dict[str, str] = {}
        # A command the workers start under, e.g. setpriv to drop root's capabilities.
        self.prefix: list[str] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            STEPWISE_ARTIFACTS=str(settings.STEPWISE_ARTIFACTS),
            STEPWISE_ARTIFACTS_OPTIONS=json.dumps(settings.STEPWISE_ARTIFACTS_OPTIONS),
            STEPWISE_ARTIFACTS_CACHE=str(settings.STEPWISE_ARTIFACTS_CACHE),
            STEPWISE_WORKDIR=str(settings.STEPWISE_WORKDIR),
            STEPWISE_ENVS_CACHE=str(settings.STEPWISE_ENVS_CACHE),
            STEPWISE_HEARTBEAT_S=str(settings.STEPWISE_HEARTBEAT_S),
            STEPWISE_RETRY_BACKOFF_S=str(settings.STEPWISE_RETRY_BACKOFF_S),
            STEPWISE_LOG_LINE_MAX=str(settings.STEPWISE_LOG_LINE_MAX),
            # Tests coordinate with their steps through files in their tmp_path (flags, counters,
            # records of what ran): a folder every sandboxed step of these workers may write.
            STEPWISE_SANDBOX_SHARED=str(self.tmp),
        )
        env.update(self.extra_env)
        return env

    def start(self, count: int = 1) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                [*self.prefix, sys.executable, str(ROOT / "manage.py"), "stepwise_worker", "test-target"],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("worker-*.log")))


def staged_etc(pid: int) -> list[Path]:
    """The copies of /etc that the worker `pid` made for its steps: on the tmpfs, or in the work folder."""
    from runs import sandbox

    workdir = Path(settings.STEPWISE_WORKDIR)
    return [*sandbox.ETC_STAGING.glob(f".stepwise-etc-{pid}-*"), *workdir.glob(f".etc-{pid}-*")]


def pids_matching(marker: str) -> list[str]:
    """The step processes whose command line holds `marker`; not the sandbox around them
    (bubblewrap's processes carry the step's command line among their arguments)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if _comm(pid) != "bwrap"]


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def marker():
    """A unique string to find a test's step processes by; whatever is left of them dies after the test."""
    value = f"stepwise-fault-{uuid.uuid4().hex}"
    yield value
    for pid in pids_matching(value):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def isolated_store(settings, tmp_path_factory):
    # Each test session gets its own artifact store and working folders.
    base = tmp_path_factory.getbasetemp()
    settings.STEPWISE_ARTIFACTS = str(base / "artifacts")
    settings.STEPWISE_WORKDIR = base / "work"
    settings.STEPWISE_ARTIFACTS_CACHE = base / "cache"
    settings.STEPWISE_ENVS_CACHE = base / "envs"
    settings.STEPWISE_HEARTBEAT_S = 1


@pytest.fixture
def compute_target(transactional_db, request) -> ComputeTarget:
    """The default target, sandboxed as `make run` makes it unless the test is marked `isolation("none")`."""
    ComputeTarget.objects.all().delete()
    marker = request.node.get_closest_marker("isolation")
    return ComputeTarget.objects.create(
        name="test-target",
        aliases=["cpu-cluster", "local"],
        queue=f"test-{uuid.uuid4().hex[:8]}",
        is_default=True,
        isolation=marker.args[0] if marker else Isolation.SANDBOX,
    )


@pytest.fixture
def workers(compute_target, tmp_path):
    pool = Workers(compute_target.queue, tmp_path)
    yield pool
    pool.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition", details=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    extra = f": {details()}" if details else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {message}{extra}")
