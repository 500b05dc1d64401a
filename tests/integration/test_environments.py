"""A conda file's packages on a real (sandboxed) worker: built on the first run, found on the second."""

from __future__ import annotations

import pytest

from runs import services
from runs.models import RunState
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run
from tests.runs.test_environments import pipeline_text
from tests.wheels import make_wheel

pytestmark = pytest.mark.integration


def test_a_worker_builds_the_environment_once_and_the_next_run_reuses_it(workers, alice, team, tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinypkg", "0.1", 'VALUE = "tiny-ok"\n')
    workers.extra_env["STEPWISE_ENV_PACKAGE_DIRS"] = str(wheels)
    version = import_yaml(tmp_path, pipeline_text(wheels), alice, team)
    workers.start(1)

    logs = []
    for _ in range(2):
        run = wait_run(services.run_create(version=version, user=alice, force_rerun=True))
        step = steps_of(run)["use"]
        assert run.state == RunState.SUCCEEDED, (step.reason, log_text(step), workers.logs())
        logs.append(log_text(step))
    assert "VALUE tiny-ok True" in logs[0] and "VALUE tiny-ok True" in logs[1]
    assert "[environment] building a virtual environment" in logs[0]
    assert "[environment]" not in logs[1]
