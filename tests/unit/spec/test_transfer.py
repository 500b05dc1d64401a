"""`type: data_transfer` jobs: read, checked, exported and read back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.spec import dump_folder, from_json, load_pipeline, to_json
from stepwise.spec.model import TransferSettings
from stepwise.spec.transfer import Location, parse_location

from .helpers import errors_of, one

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "data_transfer"

IMPORT_EXPORT = """\
type: pipeline
jobs:
  fetch:
    type: data_transfer
    task: import_data
    component: azureml://registries/azureml/components/import_data_file_system/versions/0.0.1
    source:
      type: file_system
      path: s3://raw-bucket/2024/readings
      connection: azureml:my-s3-connection
    outputs:
      sink:
        type: uri_folder
  publish:
    type: data_transfer
    task: export_data
    inputs:
      source: ${{parent.jobs.fetch.outputs.sink}}
    sink:
      type: file_system
      path: azureml://datastores/lake/paths/published/readings
"""


def test_the_corpus_sample_loads_as_a_copy_step_and_round_trips(tmp_path):
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    step = p.jobs["merge_files"]
    assert step.transfer == TransferSettings(task="copy_data", data_copy_mode="merge_with_overwrite")
    assert step.command == "" and step.is_deterministic
    assert {n: d.type for n, d in step.input_decls.items()} == {"folder1": "uri_folder", "file1": "uri_file"}
    assert list(step.output_decls) == ["output_folder"]
    assert from_json(to_json(p)).jobs == p.jobs
    dump_folder(p, tmp_path / "out")
    assert not (tmp_path / "out" / "components" / "merge_files.yml").exists()
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again.jobs == p.jobs


def test_import_and_export_keep_their_endpoints_and_are_never_reused(tmp_path):
    from stepwise.spec import parse_text

    p, _ = parse_text(IMPORT_EXPORT)
    fetch, publish = p.jobs["fetch"], p.jobs["publish"]
    assert fetch.transfer.source == "s3://raw-bucket/2024/readings"
    assert fetch.transfer.connection == "azureml:my-s3-connection"
    assert fetch.transfer.component.startswith("azureml://registries/azureml/")
    assert publish.transfer.sink == "azureml://datastores/lake/paths/published/readings"
    # What an import reads and an export writes live outside Stepwise.
    assert not fetch.is_deterministic and not publish.is_deterministic
    assert p.edges() == [("fetch", "sink", "publish", "source")]
    dump_folder(p, tmp_path / "out")
    assert load_pipeline(tmp_path / "out" / "pipeline.yml")[0].jobs == p.jobs


def test_import_without_outputs_gets_azure_mls_sink_output():
    from stepwise.spec import parse_text

    text = IMPORT_EXPORT.replace("    outputs:\n      sink:\n        type: uri_folder\n", "")
    assert list(parse_text(text)[0].jobs["fetch"].output_decls) == ["sink"]


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        (("task: import_data", "task: move_data"), "task must be one of copy_data, import_data, export_data", "task"),
        (
            ("type: file_system\n      path: s3", "type: database\n      path: s3"),
            "source type 'database'",
            "source.type",
        ),
        (("s3://raw-bucket/2024/readings", "s3://raw-bucket/../etc"), "is not azureml://datastores", "source.path"),
        (("s3://raw-bucket/2024/readings", "/etc/passwd"), "is not azureml://datastores", "source.path"),
        (
            ("azureml://registries/azureml/components/import", "./import"),
            "must be Azure ML's built-in one",
            "component",
        ),
        (
            (
                "    sink:\n      type: file_system\n      path: azureml",
                "    sinks:\n      type: file_system\n      path: azureml",
            ),
            "sink is required",
            "sink",
        ),
    ],
)
def test_bad_fields_are_named(change, message, field):
    problem = one(errors_of(IMPORT_EXPORT.replace(*change)), message)
    assert problem.field == field


def test_copy_data_checks_its_mode_inputs_and_outputs():
    text = CORPUS.joinpath("pipeline.yml").read_text()
    problem = one(
        errors_of(text.replace("merge_with_overwrite", "overwrite"), base_dir=CORPUS), "data_copy_mode must be one of"
    )
    assert problem.job == "merge_files" and problem.field == "data_copy_mode"
    no_output = text.replace("    outputs:\n      output_folder:\n        type: uri_folder\n", "")
    one(errors_of(no_output, base_dir=CORPUS), "task copy_data writes one output, got 0")
    literal = text.replace("file1: ${{parent.inputs.notes}}", "file1: 3")
    problem = one(errors_of(literal, base_dir=CORPUS), "input 'file1' is integer, not uri_folder or uri_file")
    assert problem.job == "merge_files"


def test_export_takes_one_input_and_writes_no_output():
    text = IMPORT_EXPORT.replace("      source: ${{parent.jobs.fetch.outputs.sink}}\n", "")
    one(errors_of(text), "task export_data takes one input, got 0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("azureml://datastores/lake/paths/a/b.csv", Location("datastore", "lake", "a/b.csv")),
        ("azureml://datastores/lake/paths/", Location("datastore", "lake", "")),
        ("azureml://datastores/lake/paths/./a//b/", Location("datastore", "lake", "a/b")),
        ("s3://bucket-1/x/y", Location("s3", "bucket-1", "x/y")),
        ("azureml://datastores/lake/paths/a/../../b", None),
        ("azureml://datastores/../paths/a", None),
        ("https://example.com/a", None),
        ("s3://Bad_Bucket/x", None),
    ],
)
def test_locations(text, expected):
    assert parse_location(text) == expected
