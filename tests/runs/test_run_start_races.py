"""A pipeline deleted while one of its runs starts: the run is refused cleanly, or the delete
waits for it and refuses; never a foreign key failing at commit (a 500) or a run without its
pipeline."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from pipelines_ui.deletion import PipelineDeleteError, pipeline_delete
from pipelines_ui.models import Pipeline
from runs import remote_inputs, services
from runs.models import Run, StepRun
from runs.services import PipelineDeleted, run_create
from tests.api.conftest import bearer, token_for
from tests.runs.conftest import make_pipeline


@pytest.mark.django_db
def test_a_run_of_a_pipeline_deleted_meanwhile_is_refused_and_nothing_is_written(team, alice):
    pipeline = make_pipeline(team, alice)
    version = pipeline.latest_version
    assert version.pipeline.team == team  # loaded, as by the request that found the pipeline
    pipeline_delete(pipeline=pipeline)
    with pytest.raises(PipelineDeleted, match=f"pipeline #{pipeline.pk} was deleted: no run was started"):
        run_create(version=version, user=alice)
    assert not Run.objects.exists() and not StepRun.objects.exists()


@pytest.mark.django_db
def test_the_api_answers_404_when_the_pipeline_goes_while_its_run_starts(team, alice, monkeypatch):
    pipeline = make_pipeline(team, alice)
    real_fetch = remote_inputs.remote_inputs_fetch

    def deleted_meanwhile(**kwargs):
        pipeline_delete(pipeline=Pipeline.objects.get(pk=pipeline.pk))
        return real_fetch(**kwargs)

    # Between the request finding the pipeline and the run's transaction.
    monkeypatch.setattr(services.remote_inputs, "remote_inputs_fetch", deleted_meanwhile)
    response = bearer(token_for(alice, "run")).post(f"/api/v1/pipelines/{pipeline.pk}/runs/", {}, format="json")
    assert response.status_code == 404
    assert response.json()["detail"] == f"pipeline #{pipeline.pk} was deleted: no run was started"
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_delete_waits_for_a_run_being_written_then_refuses_as_the_run_is_active(team, alice, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    pipeline = make_pipeline(team, alice)
    version = pipeline.latest_version
    written, release = threading.Event(), threading.Event()
    real_record = remote_inputs.remote_inputs_record

    def slow_record(**kwargs):
        written.set()  # the run's row is written, its transaction still open
        release.wait(30)
        return real_record(**kwargs)

    monkeypatch.setattr(services.remote_inputs, "remote_inputs_record", slow_record)
    outcome: dict[str, object] = {}

    def start() -> None:
        try:
            outcome["run"] = run_create(version=version, user=alice)
        finally:
            connection.close()

    def delete() -> None:
        try:
            pipeline_delete(pipeline=Pipeline.objects.get(pk=pipeline.pk))
            outcome["delete"] = "deleted"
        except PipelineDeleteError as exc:
            outcome["delete"] = str(exc)
        finally:
            connection.close()

    starter = threading.Thread(target=start)
    starter.start()
    assert written.wait(30)
    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join(1.0)
    assert deleter.is_alive(), f"the delete did not wait for the run being written: {outcome}"
    release.set()
    starter.join(30)
    deleter.join(30)
    assert isinstance(outcome.get("run"), Run)
    assert "still queued or running" in str(outcome["delete"])
    assert Pipeline.objects.filter(pk=pipeline.pk).exists()
    assert Run.objects.filter(pipeline_id=pipeline.pk).count() == 1
