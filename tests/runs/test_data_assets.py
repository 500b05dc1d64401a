"""Data assets: every way of creating a version, immutability, archive, and resolving inputs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import ProtectedError

from runs import artifacts, data_assets
from runs.data_assets import DataError, data_create_from_path, data_resolve, data_resolver
from runs.models import Artifact, DataVersion, RunDataInput, StepOutput, StepState
from runs.services import RunInputError, run_create, run_rerun
from stepwise.spec import DataLookupError, SpecError, load_pipeline, parse_text, to_json
from stepwise.spec.serialize import dump_folder
from tests.runs.conftest import make_pipeline, set_step

pytestmark = pytest.mark.django_db

READER = """
type: pipeline
inputs:
  raw: {{type: uri_folder, path: "{ref}"}}
jobs:
  read:
    command: ls ${{{{inputs.d}}}}
    inputs: {{d: "${{{{parent.inputs.raw}}}}"}}
"""


def folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def digits(team, alice, tmp_path) -> DataVersion:
    return data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d1", {"a.csv": "x\n1\n"}), user=alice)


# ---- creating ----------------------------------------------------------------------------


def test_create_from_a_folder_hashes_a_manifest_and_numbers_versions(team, alice, tmp_path, digits):
    assert (digits.version, digits.type, digits.file_count, digits.size) == ("1", "uri_folder", 1, 4)
    assert digits.artifact.sha256 and artifacts.artifact_intact(digits.artifact, verify_content=True)
    second = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d2", {"a.csv": "x\n2\n"}))
    assert second.version == "2" and second.artifact != digits.artifact
    named = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d3", {"b": "b"}), version="v3")
    after = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d4", {"c": "c"}))
    assert (named.version, after.version) == ("v3", "3")


def test_create_from_a_file_keeps_its_name(team, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    version = data_create_from_path(team=team, name="notes", path=path, type_="uri_file")
    assert artifacts.artifact_path(version.artifact).read_text() == "hello"
    assert artifacts.stored_files(version.artifact) == ["notes.txt"]


def test_the_source_can_change_afterwards_without_changing_the_version(team, tmp_path):
    source = folder(tmp_path, "src", {"v.txt": "one"})
    version = data_create_from_path(team=team, name="d", path=source)
    (source / "v.txt").write_text("two")
    assert (artifacts.artifact_path(version.artifact) / "v.txt").read_text() == "one"


def test_equal_data_is_stored_once(team, tmp_path):
    a = data_create_from_path(team=team, name="a", path=folder(tmp_path, "x", {"f": "same"}))
    b = data_create_from_path(team=team, name="b", path=folder(tmp_path, "y", {"f": "same"}))
    assert a.artifact_id == b.artifact_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "invalid data asset name"),
        ({"name": "../x"}, "invalid data asset name"),
        ({"version": "latest"}, "invalid version"),
        ({"version": "a/b"}, "invalid version"),
        ({"type_": "mltable"}, "unknown data type"),
        ({"type_": "uri_file"}, "is not a file"),
    ],
)
def test_bad_input_is_named_and_nothing_is_saved(team, tmp_path, kwargs, message):
    args = {"team": team, "name": "ok", "path": folder(tmp_path, "f", {"a": "a"}), **kwargs}
    with pytest.raises(DataError, match=message):
        data_create_from_path(**args)
    assert not DataVersion.objects.exists()


def test_a_taken_version_is_refused(team, tmp_path, digits):
    with pytest.raises(DataError, match="already has a version 1"):
        data_create_from_path(team=team, name="digits", path=folder(tmp_path, "o", {"z": "z"}), version="1")
    assert DataVersion.objects.count() == 1


def test_create_from_a_step_output_reuses_its_files(run, tmp_path, alice):
    src = folder(tmp_path, "out", {"rows.csv": "a\n"})
    artifact = artifacts.store_output(src, Artifact.Kind.FOLDER)
    step = set_step(run, "prep", state=StepState.SUCCEEDED)
    output = StepOutput.objects.create(step_run=step, name="data", artifact=artifact)
    version = data_assets.data_create_from_step_output(step_output=output, name="prepared", user=alice)
    assert version.artifact == artifact and version.step_output == output
    assert version.asset.team == run.pipeline.team and version.source == DataVersion.Source.STEP_OUTPUT


def test_create_from_a_local_datastore_path_and_browse_it(team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    root = folder(tmp_path, "store", {"raw/a.csv": "1", "raw/b.csv": "2", "top.txt": "t"})
    with pytest.raises(DataError, match="must be a folder inside"):
        data_assets.datastore_create(team=team, name="etc", kind="local", root="/etc")
    store = data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))
    assert [(e["name"], e["is_dir"]) for e in data_assets.datastore_browse(store)] == [
        ("raw", True),
        ("top.txt", False),
    ]
    version = data_assets.data_create_from_datastore(datastore=store, path="raw", name="raw")
    assert version.file_count == 2 and version.datastore == store and version.source_path == "raw"
    with pytest.raises(DataError, match="leaves the datastore"):
        data_assets.data_create_from_datastore(datastore=store, path="../..", name="escape")
    with pytest.raises(DataError, match="does not exist"):
        data_assets.data_create_from_datastore(datastore=store, path="nope", name="missing")
    # Paths no file can have are refused with a message, not a 500.
    with pytest.raises(DataError, match="NUL"):
        data_assets.data_create_from_datastore(datastore=store, path="raw\x00", name="nul")
    with pytest.raises(DataError, match="is not a path in datastore lake: File name too long"):
        data_assets.data_create_from_datastore(datastore=store, path="a" * 300, name="long")


def test_a_team_cannot_take_another_team_s_datastore_folder(team, other_team, tmp_path, settings):
    # The same folder (or one holding it, or inside it) would let its members read and register
    # the other team's files.
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path / "store"]
    root = folder(tmp_path, "store/group/a", {"secret.txt": "theirs"})
    data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))
    for taken in (root, root.parent, root / "sub", Path(str(root) + "/")):
        with pytest.raises(DataError, match="another team's datastore folder"):
            data_assets.datastore_create(team=other_team, name="mine", kind="local", root=str(taken))
    data_assets.datastore_create(team=team, name="lake-raw", kind="local", root=str(root / "raw"))  # its own: fine
    with pytest.raises(DataError, match="not all of it"):  # which would leave no folder to any other team
        data_assets.datastore_create(team=team, name="all", kind="local", root=str(tmp_path / "store"))
    mine = data_assets.datastore_create(team=other_team, name="mine", kind="local", root=str(tmp_path / "store/b"))
    assert mine.team == other_team


def test_datastore_credentials_are_stored_encrypted(team):
    store = data_assets.datastore_create(
        team=team, name="s3", kind="s3", root="s3://bucket/p", credentials={"key": "AKIAXXXX", "secret": "s3cr3t"}
    )
    store.refresh_from_db()
    assert "s3cr3t" not in str(store.credentials) and "AKIAXXXX" not in str(store.credentials)


# ---- immutability, archive, delete -------------------------------------------------------


def test_a_version_is_immutable_but_its_labels_change(digits, tmp_path):
    digits.version = "9"
    with pytest.raises(ValueError, match="immutable"):
        digits.save()
    digits.refresh_from_db()
    digits.description = "digits, cleaned"
    digits.save(update_fields=["description"])
    digits.refresh_from_db()
    assert (digits.version, digits.description) == ("1", "digits, cleaned")


def test_archive_hides_a_version_from_latest_only(team, tmp_path, digits):
    second = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d2", {"a.csv": "2"}))
    assert data_resolve(team=team, name="digits", version=None) == second
    data_assets.data_archive(version=second)
    assert data_resolve(team=team, name="digits", version=None) == digits
    assert data_resolve(team=team, name="digits", version="2") == second
    data_assets.data_archive(version=digits)
    with pytest.raises(DataLookupError, match="only archived versions"):
        data_resolve(team=team, name="digits", version=None)


def test_a_version_a_run_read_cannot_be_deleted(team, alice, digits):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(ref="azureml:digits@latest"))
    run_create(version=pipeline.latest_version, user=alice)
    with pytest.raises(DataError, match="archive it instead"):
        data_assets.data_version_delete(version=digits)
    with pytest.raises(ProtectedError):
        digits.delete()


def test_gc_keeps_what_data_versions_hold(digits, settings):
    from datetime import timedelta

    from runs import gc

    Artifact.objects.filter(pk=digits.artifact_id).update(created_at=digits.created_at - timedelta(days=2))
    report = gc.collect(dry_run=False)
    assert digits.artifact.sha256 not in report.artifacts
    assert artifacts.artifact_intact(digits.artifact)


# ---- resolution ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("azureml:digits:1", ("digits", "1")),
        ("azureml:digits@latest", ("digits", None)),
        ("azureml:my.data-set_2:v1.0", ("my.data-set_2", "v1.0")),
        ("azureml:digits", None),
        ("azureml:digits@stable", None),
        ("azureml://registries/x/data/y", None),
    ],
)
def test_reference_forms(ref, expected):
    from stepwise.spec.bindings import parse_asset_ref

    assert parse_asset_ref(ref) == expected


def test_import_names_an_unknown_asset_and_version(team, digits):
    resolver = data_assets.data_resolver(team)
    with pytest.raises(SpecError) as unknown:
        parse_text(READER.format(ref="azureml:nothing:3"), resolve_data=resolver)
    assert "'nothing'" in str(unknown.value) and "version 3" in str(unknown.value)
    assert "inputs.raw.path" in str(unknown.value)
    with pytest.raises(SpecError, match="'digits' has no version '7'"):
        parse_text(READER.format(ref="azureml:digits:7"), resolve_data=resolver)
    with pytest.raises(SpecError, match="is not azureml:NAME:VERSION"):
        parse_text(READER.format(ref="azureml:digits@best"), resolve_data=resolver)
    spec, _ = parse_text(READER.format(ref="azureml:digits@latest"), resolve_data=resolver)
    assert spec.inputs["raw"].asset == "azureml:digits@latest"


def test_other_teams_assets_do_not_resolve(other_team, digits):
    with pytest.raises(SpecError, match="not registered in team"):
        parse_text(READER.format(ref="azureml:digits:1"), resolve_data=data_assets.data_resolver(other_team))


def test_a_job_level_asset_path_is_read_as_a_pipeline_input_of_its_own(team, alice, digits):
    """As Azure ML's samples write it: the run records the exact version, under the input read_d."""
    text = """
type: pipeline
jobs:
  read:
    command: ls ${{inputs.d}}
    inputs: {d: {type: uri_folder, path: "azureml:digits@latest", mode: ro_mount}}
"""
    pipeline = make_pipeline(team, alice, name="job-reader", yaml_text=text)
    run = run_create(version=pipeline.latest_version, user=alice)
    recorded = RunDataInput.objects.get(run=run, name="read_d")
    assert recorded.data_version == digits and recorded.reference == "azureml:digits@latest"


def test_a_job_level_asset_that_does_not_exist_is_named_at_import(team, digits):
    text = (
        "type: pipeline\njobs:\n  read:\n    command: ls ${{inputs.d}}\n"
        "    inputs: {d: {type: uri_folder, path: 'azureml:nothing@latest'}}\n"
    )
    with pytest.raises(SpecError, match="nothing"):
        parse_text(text, resolve_data=data_resolver(team))


def test_export_writes_the_reference_back_and_old_hashes_stay(tmp_path):
    spec, _ = parse_text(READER.format(ref="azureml:digits@latest"))
    dump_folder(spec, tmp_path / "out")
    assert "path: azureml:digits@latest" in (tmp_path / "out" / "pipeline.yml").read_text()
    # A version saved before data assets has inputs without the key, so its content hash is unchanged.
    plain, _ = parse_text("type: pipeline\ninputs: {n: 1}\njobs:\n  a: {command: echo}\n")
    assert "asset" not in to_json(plain)["inputs"]["n"]
    assert to_json(spec)["inputs"]["raw"]["asset"] == "azureml:digits@latest"


@pytest.mark.parametrize("ref", ["azureml:digits:1", "azureml:digits@latest"])
def test_a_run_records_the_exact_version(team, alice, tmp_path, digits, ref):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(ref=ref))
    second = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d2", {"a.csv": "2"}))
    run = run_create(version=pipeline.latest_version, user=alice)
    recorded = RunDataInput.objects.get(run=run, name="raw")
    assert recorded.data_version == (digits if ref.endswith(":1") else second)
    assert recorded.reference == ref
    # A rerun reads what the first run read, even after a newer version arrives.
    data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d3", {"a.csv": "3"}))
    set_step(run, "read", state=StepState.SUCCEEDED)
    run.state = "succeeded"
    run.save(update_fields=["state"])
    rerun = run_rerun(run=run, user=alice)
    assert RunDataInput.objects.get(run=rerun, name="raw").data_version == recorded.data_version


def test_a_run_whose_asset_vanished_is_refused_with_nothing_saved(team, alice, digits):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(ref="azureml:digits@latest"))
    data_assets.data_archive(version=digits)
    with pytest.raises(RunInputError) as refused:
        run_create(version=pipeline.latest_version, user=alice)
    assert "raw" in refused.value.errors and "digits@latest" in refused.value.errors["raw"]
    assert not pipeline.runs.exists()


def test_a_type_mismatch_is_refused(team, alice, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("1")
    data_create_from_path(team=team, name="single", path=path, type_="uri_file")
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(ref="azureml:single:1"))
    with pytest.raises(RunInputError, match="is uri_file but the input is uri_folder"):
        run_create(version=pipeline.latest_version, user=alice)


def test_a_data_input_cannot_be_overridden_at_run_time(team, alice, digits):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(ref="azureml:digits:1"))
    with pytest.raises(RunInputError, match="cannot be overridden"):
        run_create(version=pipeline.latest_version, user=alice, inputs={"raw": "/etc"})


# ---- command line -------------------------------------------------------------------------


def test_manage_data_create_and_list(team, tmp_path):
    source = folder(tmp_path, "cli", {"x.csv": "1,2\n"})
    out = io.StringIO()
    call_command("data", "create", "--name", "cli", "--path", str(source), "--team", team.name, stdout=out)
    assert out.getvalue().startswith("created azureml:cli:1 (uri_folder, 1 files")
    call_command("data", "create", "--name", "cli", "--path", str(source / "x.csv"), "--version", "f1", stdout=out)
    assert DataVersion.objects.get(version="f1").type == "uri_file"
    listing = io.StringIO()
    call_command("data", "list", stdout=listing)
    assert "cli:f1\turi_file" in listing.getvalue() and "cli:1\turi_folder" in listing.getvalue()


def test_manage_data_create_names_a_missing_path(team, tmp_path, capsys):
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("data", "create", "--name", "x", "--path", str(tmp_path / "nope"), stderr=err)
    assert exited.value.code == 2 and "no such file or folder" in err.getvalue()


def test_outputs_name_and_version_parse_export_and_are_checked(tmp_path):
    text = (
        "type: pipeline\njobs:\n  a:\n    command: echo ${{outputs.o}}\n"
        "    outputs:\n      o: {type: uri_folder, name: prepared, version: '3'}\n"
    )
    spec, _ = parse_text(text)
    decl = spec.jobs["a"].output_decls["o"]
    assert (decl.asset_name, decl.asset_version) == ("prepared", "3")
    dump_folder(spec, tmp_path / "out")
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again.jobs["a"].output_decls["o"] == decl
    with pytest.raises(SpecError, match="output name 'bad name' is not a valid data asset name"):
        parse_text(text.replace("prepared", "bad name"))


def test_editing_the_pipeline_inputs_keeps_the_asset_reference():
    from pipelines_ui.forms import InterfaceForms

    spec, _ = parse_text(READER.format(ref="azureml:digits@latest"))
    data = {
        "pin-TOTAL_FORMS": "1",
        "pin-INITIAL_FORMS": "1",
        "pin-0-name": "raw",
        "pin-0-type": "uri_folder",
        "pin-0-default": "",
        "pin-0-description": "digits, as registered",
        "pout-TOTAL_FORMS": "0",
        "pout-INITIAL_FORMS": "0",
    }
    forms = InterfaceForms(data, spec=spec)
    assert forms.is_valid(), (forms.inputs.errors, forms.outputs.errors)
    edited = forms.apply(spec)
    assert edited.inputs["raw"].asset == "azureml:digits@latest"
    assert edited.inputs["raw"].description == "digits, as registered"


def test_manage_data_create_from_a_datastore_with_tags(team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    root = folder(tmp_path, "lake", {"raw/a.csv": "1"})
    data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))
    out = io.StringIO()
    args = ["--name", "raw", "--path", "raw", "--datastore", "lake", "--tag", "source=lake", "--tag", "stage=bronze"]
    call_command("data", "create", *args, stdout=out)
    version = DataVersion.objects.get(asset__name="raw")
    assert version.datastore.name == "lake" and version.tags == {"source": "lake", "stage": "bronze"}
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("data", "create", "--name", "x", "--path", "raw", "--datastore", "nope", stderr=err)
    assert "no datastore named 'nope'" in err.getvalue()
    with pytest.raises(SystemExit):
        call_command("data", "create", "--name", "x", "--path", "raw", "--datastore", "lake", "--tag", "x", stderr=err)
    assert "use KEY=VALUE" in err.getvalue()
