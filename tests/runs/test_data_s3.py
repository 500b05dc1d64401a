"""A datastore in S3 (moto): browsed and turned into a data asset with the store's own credentials."""

from __future__ import annotations

import logging
import uuid

import fsspec
import pytest
from moto.server import ThreadedMotoServer

from runs import artifacts, data_assets
from runs.data_assets import DataError
from runs.models import RunRemoteInput
from runs.services import run_create
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def moto(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="werkzeug")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)  # only the datastore's own settings reach S3
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_an_s3_datastore_is_browsed_and_registered_as_data(moto, team):
    options = {"endpoint_url": moto, "skip_instance_cache": True, "use_listings_cache": False}
    fs = fsspec.filesystem("s3", key="k", secret="s", **options)
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    fs.pipe({f"{bucket}/raw/a.csv": b"x\n1\n", f"{bucket}/raw/sub/b.csv": b"x\n2\n", f"{bucket}/top.txt": b"t"})
    store = data_assets.datastore_create(
        team=team,
        name="lake",
        kind="s3",
        root=f"s3://{bucket}",
        options=options,
        credentials={"key": "k", "secret": "s"},
    )
    listed = {(e["name"], e["is_dir"]) for e in data_assets.datastore_browse(store)}
    assert listed == {("raw", True), ("top.txt", False)}

    version = data_assets.data_create_from_datastore(datastore=store, path="raw", name="raw")
    assert (version.file_count, version.size, version.source_path) == (2, 8, "raw")
    assert sorted(artifacts.stored_files(version.artifact)) == ["a.csv", "sub/b.csv"]
    single = data_assets.data_create_from_datastore(datastore=store, path="top.txt", name="top", type_="uri_file")
    assert artifacts.artifact_path(single.artifact).read_text() == "t"
    with pytest.raises(DataError, match="does not exist"):
        data_assets.data_create_from_datastore(datastore=store, path="nothing", name="none")
    with pytest.raises(DataError, match="leaves the datastore"):
        data_assets.data_create_from_datastore(datastore=store, path="raw/../../other", name="escape")


@pytest.fixture
def lake(moto, team):
    options = {"endpoint_url": moto, "skip_instance_cache": True, "use_listings_cache": False}
    fs = fsspec.filesystem("s3", key="k", secret="s", **options)
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    fs.pipe({f"{bucket}/raw/a.csv": b"x\n1\n", f"{bucket}/raw/sub/b.csv": b"x\n2\n"})
    store = data_assets.datastore_create(
        team=team,
        name="lake",
        kind="s3",
        root=f"s3://{bucket}",
        options=options,
        credentials={"key": "k", "secret": "s"},
    )
    return store, fs, bucket


READER = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: "azureml://datastores/lake/paths/raw"}
jobs:
  read:
    command: ls ${{inputs.d}}
    inputs: {d: "${{parent.inputs.raw}}"}
"""


def test_an_s3_datastore_path_input_is_copied_when_the_run_is_created(lake, team, alice):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER)
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run, name="raw")
    assert sorted(artifacts.stored_files(row.artifact)) == ["a.csv", "sub/b.csv"] and row.datastore == lake[0]


def test_an_s3_path_s_state_changes_with_its_content_only(lake):
    store, fs, bucket = lake
    before = data_assets.datastore_path_state(store, "raw")
    assert before and data_assets.datastore_path_state(store, "raw") == before
    fs.pipe({f"{bucket}/raw/c.csv": b"x\n3\n"})
    after = data_assets.datastore_path_state(store, "raw")
    assert after not in ("", before)
    assert data_assets.datastore_path_state(store, "missing") == ""
