"""The reconciler's pass goes on past a run it cannot advance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import reconciler
from runs.models import Run
from tests.runs.conftest import make_pipeline, make_run

pytestmark = pytest.mark.django_db


def test_a_run_that_cannot_advance_does_not_stop_the_pass(team, alice, monkeypatch):
    pipeline = make_pipeline(team, alice)
    broken, fine = make_run(pipeline, alice), make_run(pipeline, alice)
    Run.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    advanced = []

    def advance(run_id):
        advanced.append(run_id)
        if run_id == broken.pk:
            raise ValueError("a value the database refuses")

    monkeypatch.setattr("runs.orchestrator.run_advance", advance)
    monkeypatch.setattr(reconciler, "_job_alive", lambda *args: True)
    reconciler.tick()
    assert sorted(advanced) == sorted([broken.pk, fine.pk])


def test_a_job_gone_between_its_fetch_and_its_status_counts_as_lost(monkeypatch):
    # Its worker ended it (or Redis dropped it) in between: rq raised InvalidJobOperation, which
    # stopped the reconciler's pass (seen once under load in test_faults).
    from rq.exceptions import InvalidJobOperation

    class Gone:
        origin = "stepwise-local"

        def get_status(self, refresh=True):
            raise InvalidJobOperation("Failed to retrieve status for job")

    monkeypatch.setattr(reconciler.Job, "fetch", lambda *args, **kwargs: Gone())
    monkeypatch.setattr(reconciler.queues, "job_id", lambda step_run: "job")
    monkeypatch.setattr(reconciler.queues, "queue_name", lambda queue: "stepwise-local")
    assert reconciler._job_alive(None, type("Step", (), {"queue": "local"})(), timezone.now()) is False
