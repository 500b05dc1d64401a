"""The artifact store in S3 (`STEPWISE_ARTIFACTS=s3://bucket/prefix`): real worker processes,
real s3fs, against a moto S3 server on this machine."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
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
from runs.artifact_files import ArtifactError, remove_tree
from runs.management.commands.pipelines import run_summary
from runs.models import Artifact, Run, RunState, StepOutput, StepState
from runs.store_fsspec import FsspecStore
from tests.integration.conftest import ROOT
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


# -- the worker's cache, under its size bound ---------------------------------------------


def cache_store(cache: Path, max_bytes: int) -> FsspecStore:
    """The store as one worker process of a host sees it; processes of one host share `cache`."""
    return FsspecStore(settings.STEPWISE_ARTIFACTS, {}, cache, max_bytes)


def put_object(store: FsspecStore, tmp_path: Path, content: bytes) -> str:
    source = tmp_path / uuid.uuid4().hex
    source.mkdir()
    (source / "data.bin").write_bytes(content)
    return store.put(source, Artifact.Kind.FOLDER).sha256


def cached(cache: Path, *shas: str) -> dict[str, bool]:
    return {sha: (cache / "objects" / sha[:2] / sha).is_dir() for sha in shas}


def test_above_its_bound_the_cache_evicts_the_least_recently_used_object(s3, tmp_path):
    store = cache_store(tmp_path / "cache", max_bytes=2500)
    a = put_object(store, tmp_path, b"a" * 1000)
    b = put_object(store, tmp_path, b"b" * 1000)
    assert cached(store.cache, a, b) == {a: True, b: True}, "the uploader keeps a copy"

    with store.hold(a):
        pass  # a use: b is now the least recently used, though a came first
    c = put_object(store, tmp_path, b"c" * 1000)

    assert cached(store.cache, a, b, c) == {a: True, b: False, c: True}
    assert not (store.cache / "locks" / b[:2] / b).exists()


def test_an_object_a_step_uses_is_not_evicted(s3, tmp_path, settings):
    settings.STEPWISE_ARTIFACTS_CACHE = cache = tmp_path / "cache"
    settings.STEPWISE_ARTIFACTS_CACHE_MAX_BYTES = 2500
    other_worker = cache_store(cache, max_bytes=2500)
    a = put_object(other_worker, tmp_path, b"a" * 1000)

    # As the executor holds a step's inputs while the step runs.
    with contextlib.ExitStack() as held:
        folder = artifacts.artifact_path(Artifact(sha256=a, kind=Artifact.Kind.FOLDER), held=held)
        b = put_object(other_worker, tmp_path, b"b" * 1000)
        c = put_object(other_worker, tmp_path, b"c" * 1000)
        # a is the least recently used, but in use: b went instead.
        assert cached(cache, a, b, c) == {a: True, b: False, c: True}

        # Another process trimming the cache to nothing passes over it too.
        trim = f"from pathlib import Path; from runs.artifact_cache import trim; print(trim(Path({str(cache)!r}), 0))"
        evicted = subprocess.run([sys.executable, "-c", trim], cwd=ROOT, capture_output=True, text=True, check=True)
        assert evicted.stdout.strip() == repr([c])
        assert (folder / "data.bin").read_bytes() == b"a" * 1000

    assert cached(cache, a) == {a: True}, "within the bound once released"


def test_an_evicted_object_is_downloaded_again_and_checked(s3, tmp_path):
    store = cache_store(tmp_path / "cache", max_bytes=1000)
    a = put_object(store, tmp_path, b"a" * 1000)
    b = put_object(store, tmp_path, b"b" * 1000)
    assert cached(store.cache, a, b) == {a: False, b: True}

    with store.hold(a) as folder:
        assert (folder / "data.bin").read_bytes() == b"a" * 1000
        assert not (folder / "data.bin").stat().st_mode & 0o222
    assert cached(store.cache, a, b) == {a: True, b: False}

    # Changed in the bucket behind its marker's back: the copy downloaded fails its hash, and is not kept.
    s3.fs.pipe_file(s3.key(b, "data.bin"), b"x" * 1000)
    with pytest.raises(ArtifactError, match="no longer matches its hash"):
        store.local_dir(b)
    assert cached(store.cache, b) == {b: False}
    assert list((store.cache / "staging").iterdir()) == []


def test_a_bound_of_0_keeps_only_what_steps_use(s3, tmp_path):
    store = cache_store(tmp_path / "cache", max_bytes=0)
    a = put_object(store, tmp_path, b"a" * 1000)
    assert cached(store.cache, a) == {a: False}, "the uploader keeps no copy"

    with store.hold(a) as folder:
        b = put_object(store, tmp_path, b"b" * 1000)
        assert cached(store.cache, a, b) == {a: True, b: False}
        assert (folder / "data.bin").read_bytes() == b"a" * 1000

    assert list((store.cache / "objects").glob("*/*")) == []
    assert list((store.cache / "locks").glob("*/*")) == []


# `slow` reads its input after `fast`, on another worker, has trimmed the cache to nothing (when it let
# go of its input, and after storing its output).
PARALLEL_READERS = """
type: pipeline
jobs:
  make:
    type: command
    command: echo from-make > ${{outputs.out}}/value.txt
    outputs:
      out: {type: uri_folder}
  slow:
    type: command
    command: sleep 3 && cat ${{inputs.x}}/value.txt > ${{outputs.result}}
    inputs:
      x: ${{parent.jobs.make.outputs.out}}
    outputs:
      result: {type: uri_file}
  fast:
    type: command
    command: sleep 1 && cat ${{inputs.x}}/value.txt > ${{outputs.result}}
    inputs:
      x: ${{parent.jobs.make.outputs.out}}
    outputs:
      result: {type: uri_file}
"""


def test_workers_sharing_a_cache_of_0_bytes_keep_a_running_steps_input(workers, s3, alice, team, tmp_path, settings):
    settings.STEPWISE_ARTIFACTS_CACHE = cache = tmp_path / "cache"
    workers.extra_env["STEPWISE_ARTIFACTS_CACHE_MAX_BYTES"] = "0"
    workers.start(2)
    run = wait_run(start_run(tmp_path, PARALLEL_READERS, alice, team))

    assert run.state == RunState.SUCCEEDED, {n: (s.state, s.reason) for n, s in steps_of(run).items()}
    slow, fast = steps_of(run)["slow"], steps_of(run)["fast"]
    assert slow.worker != fast.worker
    assert slow.started_at < fast.finished_at < slow.finished_at, "fast trimmed the cache while slow ran"
    assert s3.fs.cat(s3.key(output_of(run, "slow").sha256, "result")) == b"from-make\n"
    # No step runs now: nothing is left in the cache.
    assert list((cache / "objects").glob("*/*")) == []
