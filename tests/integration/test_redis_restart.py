"""Redis restarted and emptied in the middle of a run: a Redis of the test's own, on another
port, killed with SIGKILL and started again empty while one step runs and others wait."""

from __future__ import annotations

import shutil
import subprocess
import time

import django_rq
import pytest
import redis

from runs import queues
from runs.models import Run, RunState, StepState
from tests.conftest import free_port
from tests.integration.conftest import wait_for
from tests.integration.test_execution import steps_of
from tests.integration.test_faults import BUSY_AND_WAITING, describe, running_transitions, start_run, tick_until

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server that keeps nothing on disk, so that a restart empties it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), timeout=10, message="redis-server to answer")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis(settings, monkeypatch, workers):
    server = PrivateRedis()
    server.start()
    connection = redis.Redis.from_url(server.url)
    # This process (which enqueues, and runs the reconciler) and the workers all use it.
    monkeypatch.setattr(queues, "_queues", {})
    monkeypatch.setattr(django_rq, "get_connection", lambda name="default", **kwargs: connection)
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [server.url]}}
    }
    workers.extra_env["TEST_REDIS_URL"] = server.url
    yield server
    workers.stop()
    server.kill()


def test_a_run_survives_redis_restarted_empty_and_no_step_runs_twice(workers, private_redis, alice, team, tmp_path):
    workers.start(1)
    run = start_run(tmp_path, BUSY_AND_WAITING, alice, team)
    # One worker: while it runs a_first, the x steps wait in Redis, and Redis loses them.
    wait_for(lambda: steps_of(run)["a_first"].state == StepState.RUNNING, message="a_first to start")
    assert {steps_of(run)[f"x{i}"].state for i in range(4)} == {StepState.QUEUED}

    private_redis.kill()
    private_redis.start()
    restarted = time.monotonic()
    assert queues.get_queue(workers.queue).count == 0, "the restarted Redis is empty"

    acted = tick_until(
        lambda: Run.objects.get(pk=run.pk).state in (RunState.SUCCEEDED, RunState.FAILED),
        timeout=90,
        message="the run to end",
        details=describe(run),
    )
    recovery = time.monotonic() - restarted
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, workers.logs()
    steps = steps_of(run)
    assert {s.name for s in steps.values() if s.pk in acted["requeued"]} >= {f"x{i}" for i in range(4)}
    for step in steps.values():
        # Each step ran once, by one attempt: nothing ran twice, at the same time or after.
        assert (step.state, step.attempt) == (StepState.SUCCEEDED, 1), step.name
        assert running_transitions(step) == {1: 1}, step.name
    assert all(proc.poll() is None for proc in workers.procs), "the worker survived the restart"
    print(f"recovery after the Redis restart: the run ended {recovery:.1f} s later")
