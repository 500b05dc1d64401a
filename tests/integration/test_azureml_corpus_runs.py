"""The corpus cases marked `run: true` run unmodified on the default target with real workers."""

from __future__ import annotations

import pytest

from pipelines_ui.services import pipeline_import
from runs import services
from runs.models import RunState, StepState
from tests.integration.test_execution import log_text, steps_of, wait_run
from tests.test_azureml_corpus import CASES, apply_settings, load_case, register_components

pytestmark = pytest.mark.integration

RUNNABLE = [name for name in CASES if load_case(name).run]


def test_the_corpus_has_runnable_cases():
    assert RUNNABLE


@pytest.mark.parametrize("name", RUNNABLE)
def test_case_runs_on_the_default_target(name, workers, alice, team, settings):
    case = load_case(name)
    apply_settings(case, settings)
    register_components(case)
    workers.start(1)
    version = pipeline_import(team=team, path=case.path, user=alice, name=case.name)
    run = wait_run(services.run_create(version=version, user=alice))

    steps = steps_of(run)
    assert run.state == RunState.SUCCEEDED, {s.name: (s.state, log_text(s)) for s in steps.values()}
    assert {s.state for s in steps.values()} == {StepState.SUCCEEDED}
    assert {s.queue for s in steps.values()} == {workers.queue}
    for job, expected in case.logs.items():
        log = log_text(steps[job])
        for text in expected:
            assert text in log, (job, text, log)
