"""The artifact store in S3 (`STEPWISE_ARTIFACTS=s3://bucket/prefix`): real worker processes,
real s3fs, against a moto S3 server on this machine."""

from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import fsspec
import pytest
from django.conf import settings
from django.urls import reverse
from moto.server import ThreadedMotoServer

from runs import artifacts, gc, services
from runs.artifact_files import remove_tree
from runs.management.commands.pipelines import run_summary
from runs.models import Artifact, Run, RunState, StepOutput, StepState
from tests.integration.test_execution import steps_of, wait_run
from tests.integration.test_faults import start_run

pytestmark = pytest.mark.integration

# `use` reads what `make` stored: on another worker (or after the cache is gone) from S3.
TWO_STEPS = """
type: pipeline
jobs:
  make:
    type: command
    command: >-
      echo from-make > ${{outputs.out}}/value.txt &&
      mkdir ${{outputs.out}}/sub && echo deep > ${{outputs.out}}/sub/more.txt
    outputs:
      out: {type: uri_folder}
  use:
    type: command
    command: tr a-z A-Z < ${{inputs.x}}/value.txt > ${{outputs.result}}
    inputs:
      x: ${{parent.jobs.make.outputs.out}}
    outputs:
      result: {type: uri_file}
"""


@dataclass
class S3:
    server: ThreadedMotoServer
    endpoint: str
    bucket: str
    fs: fsspec.AbstractFileSystem

    def key(self, sha256: str, rel: str = "") -> str:
        """The object (or with rel, one of its files) under the store's prefix."""
        base = f"{self.bucket}/artifacts/objects/{sha256[:2]}/{sha256}"
        return f"{base}/{rel}" if rel else base

    def marker(self, sha256: str) -> str:
        return self.key(sha256) + ".manifest"


@pytest.fixture
def s3(settings, monkeypatch, caplog):
    """A moto S3 server on a free port with a fresh bucket; the store, and the workers, use it."""
    caplog.set_level(logging.WARNING, logger="werkzeug")  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # The documented way to reach an S3-compatible endpoint: botocore reads the AWS_* variables,
    # and the workers inherit them (Workers.env starts from os.environ).
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, endpoint_url=endpoint)
    bucket = f"stepwise-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    settings.STEPWISE_ARTIFACTS = f"s3://{bucket}/artifacts"
    yield S3(server=server, endpoint=endpoint, bucket=bucket, fs=fs)
    server.stop()


def run_two_steps(tmp_path: Path, user, team, **kwargs) -> Run:
    run = wait_run(start_run(tmp_path, TWO_STEPS, user, team, **kwargs))
    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(run).items()}
    return run


def output_of(run: Run, step: str) -> Artifact:
    return StepOutput.objects.select_related("artifact").get(step_run__run=run, step_run__name=step).artifact


def states(run: Run) -> dict[str, str]:
    return {name: s.state for name, s in steps_of(run).items()}


def rerun(run: Run, user) -> Run:
    again = wait_run(services.run_create(version=run.version, user=user))
    assert again.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(again).items()}
    return again


def clear_cache() -> None:
    """Forget every local copy, as a worker on another machine would have none."""
    remove_tree(Path(settings.STEPWISE_ARTIFACTS_CACHE))


def test_a_two_step_pipeline_stores_in_s3_and_an_unchanged_rerun_reuses_both(workers, s3, alice, team, tmp_path):
    workers.start(1)
    run = run_two_steps(tmp_path, alice, team)
    made, used = output_of(run, "make"), output_of(run, "use")

    # The files and, last, the completion marker are in the bucket; nothing went to a local store.
    assert s3.fs.cat(s3.key(made.sha256, "value.txt")) == b"from-make\n"
    assert s3.fs.cat(s3.key(made.sha256, "sub/more.txt")) == b"deep\n"
    assert s3.fs.cat(s3.key(used.sha256, "result")) == b"FROM-MAKE\n"
    marker = json.loads(s3.fs.cat(s3.marker(made.sha256)))
    assert sorted(f["path"] for f in marker["files"]) == ["sub/more.txt", "value.txt"]
    assert (made.file_count, used.kind) == (2, Artifact.Kind.FILE)

    again = rerun(run, alice)
    assert states(again) == {"make": StepState.REUSED, "use": StepState.REUSED}

    # `run --json` hands out local paths: fetched from S3 into the cache when not there yet.
    clear_cache()
    outputs = run_summary(again, "http://testserver")["steps"]
    folder = Path(outputs["make"]["outputs"]["out"])
    assert folder.is_relative_to(settings.STEPWISE_ARTIFACTS_CACHE)
    assert (folder / "value.txt").read_text() == "from-make\n"
    assert (folder / "sub" / "more.txt").read_text() == "deep\n"
    assert Path(outputs["use"]["outputs"]["result"]).read_text() == "FROM-MAKE\n"


def test_a_step_reads_an_input_that_only_s3_has(workers, s3, alice, team, tmp_path):
    workers.start(1)
    first = run_two_steps(tmp_path, alice, team)
    made = output_of(first, "make")
    clear_cache()

    second = wait_run(services.run_rerun(run=first, user=alice, mode="from", from_step="use"))
    assert states(second) == {"make": StepState.REUSED, "use": StepState.SUCCEEDED}
    assert s3.fs.cat(s3.key(output_of(second, "use").sha256, "result")) == b"FROM-MAKE\n"
    # The worker downloaded make's output into its cache, read-only, and handed that path to the step.
    cached = Path(settings.STEPWISE_ARTIFACTS_CACHE) / "objects" / made.sha256[:2] / made.sha256
    assert (cached / "value.txt").read_text() == "from-make\n"
    assert not (cached / "value.txt").stat().st_mode & 0o222


@pytest.mark.parametrize("lose", ["marker", "file"])
def test_an_output_lost_from_the_bucket_is_made_again(workers, s3, alice, team, tmp_path, lose):
    workers.start(1)
    first = run_two_steps(tmp_path, alice, team)
    made = output_of(first, "make")
    s3.fs.rm_file(s3.marker(made.sha256) if lose == "marker" else s3.key(made.sha256, "sub/more.txt"))
    assert not artifacts.artifact_intact(made, verify_content=True)

    again = rerun(first, alice)
    # Equal content again, so the downstream step still matches and is reused.
    assert states(again) == {"make": StepState.SUCCEEDED, "use": StepState.REUSED}
    assert "missing or corrupted" in steps_of(again)["make"].reason
    assert s3.fs.exists(s3.marker(made.sha256))
    assert artifacts.artifact_intact(made, verify_content=True)


def assert_failed_and_registered_nothing(run: Run, *reasons: str) -> None:
    steps = steps_of(run)
    assert run.state == RunState.FAILED
    assert steps["make"].state == StepState.FAILED
    assert steps["use"].state == StepState.SKIPPED
    for reason in reasons:
        assert reason in steps["make"].reason, steps["make"].reason
    assert not StepOutput.objects.filter(step_run__run=run).exists()
    assert not Artifact.objects.exists()


def test_a_missing_bucket_fails_the_step_with_the_s3_error(workers, s3, alice, team, tmp_path, settings):
    settings.STEPWISE_ARTIFACTS = f"s3://{s3.bucket}-gone/artifacts"
    workers.start(1)
    run = wait_run(start_run(tmp_path, TWO_STEPS, alice, team))
    assert_failed_and_registered_nothing(run, "artifact store error", "NoSuchBucket")


def test_a_stopped_endpoint_fails_the_step_with_the_s3_error(workers, s3, alice, team, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries would take about 10 s
    s3.server.stop()
    workers.start(1)
    run = wait_run(start_run(tmp_path, TWO_STEPS, alice, team))
    assert_failed_and_registered_nothing(run, "artifact store error", "Could not connect to the endpoint URL")


def test_the_download_view_serves_outputs_from_s3(workers, s3, alice, team, tmp_path, client, settings, monkeypatch):
    # The other documented way to name the endpoint: fsspec storage options, passed to the workers too.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    settings.STEPWISE_ARTIFACTS_OPTIONS = {"endpoint_url": s3.endpoint}
    workers.start(1)
    run = run_two_steps(tmp_path, alice, team)
    clear_cache()
    client.force_login(alice)

    response = client.get(reverse("step_output", args=[run.pk, "use", "result"]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"FROM-MAKE\n"
    assert 'filename="result"' in response["Content-Disposition"]

    response = client.get(reverse("step_output", args=[run.pk, "make", "out"]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.read("value.txt") == b"from-make\n"
    assert archive.read("sub/more.txt") == b"deep\n"

    # An object whose marker is gone is incomplete: not served.
    s3.fs.rm_file(s3.marker(output_of(run, "make").sha256))
    assert client.get(reverse("step_output", args=[run.pk, "make", "out"])).status_code == 404


def test_gc_removes_unreferenced_objects_and_abandoned_uploads_from_s3(workers, s3, alice, team, tmp_path, monkeypatch):
    workers.start(1)
    run = run_two_steps(tmp_path, alice, team)
    kept, doomed = output_of(run, "make"), output_of(run, "use")
    StepOutput.objects.filter(artifact=doomed).delete()
    Artifact.objects.update(created_at=doomed.created_at - gc.GRACE * 2)
    # An upload whose worker died before writing the marker: files, no marker, no row.
    abandoned = "ab" * 32
    s3.fs.pipe_file(s3.key(abandoned, "part.bin"), b"half")
    assert not artifacts.artifact_intact(Artifact(sha256=abandoned))

    report = gc.collect(dry_run=False)
    assert report.artifacts == [doomed.sha256]
    assert abandoned not in report.orphan_dirs, "too young: it may be an upload in flight"
    assert not s3.fs.exists(s3.marker(doomed.sha256))
    assert not s3.fs.find(s3.key(doomed.sha256) + "/")
    assert not Artifact.objects.filter(pk=doomed.pk).exists()

    monkeypatch.setattr(gc, "GRACE", timedelta(0))
    report = gc.collect(dry_run=False)
    assert report.orphan_dirs == [abandoned]
    assert not s3.fs.find(s3.key(abandoned) + "/")
    assert artifacts.artifact_intact(kept, verify_content=True)
