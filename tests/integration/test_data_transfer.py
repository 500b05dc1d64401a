"""`type: data_transfer` jobs on real workers: copies between steps, imports from a local
datastore and from S3 (a moto server), exports to a datastore, resume, and clear failures."""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

import fsspec
import pytest
from moto.server import ThreadedMotoServer

from runs import data_assets
from runs.artifacts import artifact_path
from runs.models import Metric, RunState, StepOutput, StepState
from runs.services import run_create
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "data_transfer"

IMPORT_THEN_EXPORT = """
type: pipeline
jobs:
  fetch:
    type: data_transfer
    task: import_data
    source:
      type: file_system
      path: {source}
  shout:
    type: command
    command: >-
      mkdir -p ${{{{outputs.out}}}}/deep &&
      tr a-z A-Z < ${{{{inputs.raw}}}}/a.txt > ${{{{outputs.out}}}}/deep/a.txt
    inputs:
      raw: ${{{{parent.jobs.fetch.outputs.sink}}}}
    outputs:
      out: {{type: uri_folder}}
  publish:
    type: data_transfer
    task: export_data
    inputs:
      source: ${{{{parent.jobs.shout.outputs.out}}}}
    sink:
      type: file_system
      path: {sink}
"""
LAKE_SINK = "azureml://datastores/lake/paths/published"


def metric(step_run, name: str) -> float:
    return Metric.objects.filter(step_run=step_run, name=name).values_list("value", flat=True).get()


@pytest.fixture
def lake(team, tmp_path, settings):
    root = tmp_path / "lake"
    (root / "raw" / "sub").mkdir(parents=True)
    (root / "raw" / "a.txt").write_text("hello\n")
    (root / "raw" / "sub" / "b.txt").write_text("bee\n")
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))
    return root


def test_copy_data_merges_a_folder_and_a_file_for_the_next_step(workers, alice, team, tmp_path):
    workers.start(1)
    shutil.copytree(CORPUS, tmp_path / "copy")
    from pipelines_ui.services import pipeline_import

    version = pipeline_import(team=team, path=tmp_path / "copy" / "pipeline.yml", user=alice, name="copy")
    run = wait_run(run_create(version=version, user=alice), timeout=120)
    steps = steps_of(run)
    merge = steps["merge_files"]
    assert run.state == RunState.SUCCEEDED, (merge.reason, log_text(merge), workers.logs())
    output = StepOutput.objects.select_related("artifact").get(step_run=merge, name="output_folder")
    folder = artifact_path(output.artifact)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "readings.csv", "stations.csv"]
    assert "[transfer] copied 3 file(s)" in log_text(merge)
    assert metric(merge, "transfer_files") == 3
    assert metric(merge, "transfer_bytes") == sum(p.stat().st_size for p in folder.iterdir())
    assert "batch 2 arrived late" in log_text(steps["count_files"])

    # The run page shows the step with its metrics, and its output in the outputs browser.
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[run.pk, "merge_files"])).content.decode()
    assert "transfer_bytes" in html
    files = client.get(reverse("step_output_files", args=[run.pk, "merge_files", "output_folder"])).content.decode()
    assert "readings.csv" in files and "<code>readings.csv</code>" in files


def test_import_from_a_local_datastore_then_export_to_it_and_resume(workers, alice, team, tmp_path, lake):
    workers.start(1)
    text = IMPORT_THEN_EXPORT.format(source="azureml://datastores/lake/paths/raw", sink=LAKE_SINK)
    version = import_yaml(tmp_path, text, alice, team)
    run = wait_run(run_create(version=version, user=alice), timeout=120)
    steps = steps_of(run)
    assert run.state == RunState.SUCCEEDED, ({n: s.reason for n, s in steps.items()}, workers.logs())
    fetched = artifact_path(StepOutput.objects.get(step_run=steps["fetch"], name="sink").artifact)
    assert (fetched / "sub" / "b.txt").read_text() == "bee\n"
    assert (lake / "published" / "deep" / "a.txt").read_text() == "HELLO\n"
    assert metric(steps["publish"], "transfer_files") == 1

    # A second run: the export finds the file there with the same hash and skips it.
    again = wait_run(run_create(version=version, user=alice), timeout=120)
    publish = steps_of(again)["publish"]
    assert again.state == RunState.SUCCEEDED, (publish.reason, log_text(publish))
    assert "[transfer] skipped deep/a.txt: already there with sha256" in log_text(publish)
    assert (metric(publish, "transfer_files"), metric(publish, "transfer_files_skipped")) == (0, 1)


def test_a_missing_datastore_path_and_an_unknown_datastore_fail_with_their_names(workers, alice, team, tmp_path, lake):
    workers.start(1)
    for name, source, reason in [
        ("missing", "azureml://datastores/lake/paths/nowhere", "source 'nowhere' in datastore lake does not exist"),
        ("unknown", "azureml://datastores/sea/paths/raw", f"team {team.name} has no datastore named sea"),
        ("nobucket", "s3://no-such-bucket/x", "no S3 datastore of team"),
    ]:
        version = import_yaml(
            tmp_path, IMPORT_THEN_EXPORT.format(source=source, sink=LAKE_SINK), alice, team, name=name
        )
        run = wait_run(run_create(version=version, user=alice), timeout=120)
        fetch = steps_of(run)["fetch"]
        assert run.state == RunState.FAILED and fetch.state == StepState.FAILED
        assert fetch.reason.startswith("data transfer failed: ") and reason in fetch.reason, fetch.reason
        assert reason in log_text(fetch)


@pytest.fixture
def moto_bucket(caplog):
    """A moto S3 server whose keys only the datastore holds: the workers' environment has none."""
    caplog.set_level(logging.WARNING, logger="werkzeug")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = fsspec.filesystem(
        "s3", skip_instance_cache=True, endpoint_url=endpoint, key="testing", secret="testing-secret-value"
    )
    bucket = f"transfer-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.pipe({f"{bucket}/in/raw/a.txt": b"hello\n", f"{bucket}/in/raw/sub/b.txt": b"bee\n"})
    yield endpoint, bucket
    server.stop()


def test_import_from_and_export_to_s3_paths_through_the_datastore_that_covers_them(
    workers, alice, team, tmp_path, moto_bucket, monkeypatch
):
    endpoint, bucket = moto_bucket
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    data_assets.datastore_create(
        team=team,
        name="bucket",
        kind="s3",
        root=f"s3://{bucket}/in",
        options={"endpoint_url": endpoint},
        credentials={"key": "testing", "secret": "testing-secret-value"},
    )
    workers.start(1)
    text = IMPORT_THEN_EXPORT.format(source=f"s3://{bucket}/in/raw", sink=f"s3://{bucket}/in/published")
    version = import_yaml(tmp_path, text, alice, team)
    run = wait_run(run_create(version=version, user=alice), timeout=120)
    steps = steps_of(run)
    assert run.state == RunState.SUCCEEDED, ({n: s.reason for n, s in steps.items()}, workers.logs())
    fetched = artifact_path(StepOutput.objects.get(step_run=steps["fetch"], name="sink").artifact)
    assert sorted(str(p.relative_to(fetched)) for p in fetched.rglob("*.txt")) == ["a.txt", "sub/b.txt"]
    assert metric(steps["fetch"], "transfer_bytes") == len(b"hello\nbee\n")
    s3 = fsspec.filesystem(
        "s3", skip_instance_cache=True, endpoint_url=endpoint, key="testing", secret="testing-secret-value"
    )
    assert s3.cat_file(f"{bucket}/in/published/deep/a.txt") == b"HELLO\n"
    for step in steps.values():
        assert "testing-secret-value" not in log_text(step)
