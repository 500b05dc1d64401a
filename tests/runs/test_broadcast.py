"""The live events' fields as design.md names them."""

from __future__ import annotations

import pytest

from runs.broadcast import run_payload, step_payload
from runs.models import StepRun, StepState
from tests.runs.conftest import make_pipeline, make_run, set_step

pytestmark = pytest.mark.django_db


def test_a_reused_step_names_the_run_it_was_reused_from(team, alice):
    pipeline = make_pipeline(team, alice)
    first, second = make_run(pipeline, alice), make_run(pipeline, alice)
    origin = StepRun.objects.get(run=first, name="prep")
    set_step(first, "prep", state=StepState.SUCCEEDED)
    set_step(second, "prep", state=StepState.REUSED, reused_from=origin)
    event = step_payload(StepRun.objects.get(run=second, name="prep"))
    # The run's id, as `pipelines run --json` gives it; the step run's id beside it.
    assert (event["reused_from"], event["reused_from_step_run"]) == (first.pk, origin.pk)
    assert step_payload(StepRun.objects.get(run=second, name="train"))["reused_from"] is None


def test_a_run_event_carries_its_progress(team, alice):
    run = make_run(make_pipeline(team, alice), alice)  # prep -> train -> report
    assert run_payload(run)["progress"] == 0.0
    set_step(run, "prep", state=StepState.SUCCEEDED)
    set_step(run, "train", state=StepState.FAILED)
    event = run_payload(run)
    assert (event["finished"], event["total"], event["progress"]) == (2, 3, pytest.approx(0.6667))
