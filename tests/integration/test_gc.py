"""`pipelines gc` removes what no step output references, and nothing that one does."""

from __future__ import annotations

import os
import time

import pytest

from runs import artifacts, gc, services
from runs.models import Artifact, StepOutput
from tests.integration.test_execution import DIAMOND, import_yaml, wait_run

pytestmark = pytest.mark.integration


def age(artifact: Artifact, hours: float = 2) -> None:
    """Make an artifact look older than gc's grace period."""
    Artifact.objects.filter(pk=artifact.pk).update(created_at=artifact.created_at - gc.GRACE * hours)
    folder = artifacts.artifact_dir(artifact.sha256)
    past = time.time() - gc.GRACE.total_seconds() * hours
    os.utime(folder, (past, past))


def test_gc_removes_only_unreferenced_artifacts(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    run = wait_run(services.run_create(version=version, user=alice))
    kept = set(StepOutput.objects.filter(step_run__run=run).values_list("artifact__sha256", flat=True))
    assert kept

    # An artifact whose run was deleted, and one still referenced; both old enough.
    doomed_output = StepOutput.objects.filter(step_run__run=run, step_run__name="c").get()
    doomed = doomed_output.artifact
    for artifact in Artifact.objects.all():
        age(artifact)
    doomed_output.delete()
    assert not StepOutput.objects.filter(artifact=doomed).exists()

    report = gc.collect(dry_run=True)
    assert artifacts.artifact_dir(doomed.sha256).exists(), "a dry run removes nothing"
    expected = [doomed.sha256]
    assert report.artifacts == expected

    gc.collect(dry_run=False)
    for sha in kept - set(expected):
        artifact = Artifact.objects.get(sha256=sha)
        assert artifacts.artifact_intact(artifact, verify_content=True)
    for sha in expected:
        assert not Artifact.objects.filter(sha256=sha).exists()
        assert not artifacts.artifact_dir(sha).exists()


def test_gc_spares_young_artifacts_that_may_be_in_flight(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    run = wait_run(services.run_create(version=version, user=alice))
    output = (
        StepOutput.objects.filter(step_run__run=run, step_run__name="d").first()
        or StepOutput.objects.filter(step_run__run=run).first()
    )
    artifact = output.artifact
    StepOutput.objects.filter(artifact=artifact).delete()
    report = gc.collect(dry_run=False)
    assert artifact.sha256 not in report.artifacts
    assert artifacts.artifact_dir(artifact.sha256).exists()


def test_gc_after_the_producing_run_is_deleted_keeps_a_data_versions_files(workers, alice, team, tmp_path):
    from runs import data_assets
    from runs.models import DataVersion, Run

    workers.start(1)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    run = wait_run(services.run_create(version=version, user=alice))
    registered = StepOutput.objects.select_related("artifact").get(step_run__run=run, step_run__name="a")
    data = data_assets.data_create_from_step_output(step_output=registered, name="from-a", user=alice)
    others = set(StepOutput.objects.filter(step_run__run=run).values_list("artifact__sha256", flat=True))
    others.discard(data.artifact.sha256)
    for artifact in Artifact.objects.all():
        age(artifact)

    Run.objects.filter(pk=run.pk).delete()
    assert not StepOutput.objects.filter(artifact=data.artifact).exists()

    report = gc.collect(dry_run=False)
    assert data.artifact.sha256 not in report.artifacts
    data = DataVersion.objects.select_related("artifact").get(pk=data.pk)
    assert data.step_output is None
    assert artifacts.artifact_intact(data.artifact, verify_content=True)
    assert (artifacts.artifact_path(data.artifact) / "value.txt").read_text() == "from-a"
    # The run's other outputs, which nothing holds any more, went.
    assert others and set(report.artifacts) >= others
