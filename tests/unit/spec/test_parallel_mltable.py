"""`type: mltable` inputs in the spec: read as a folder that a parallel job reads as a table, so
partition_keys take it; exported back as mltable."""

from __future__ import annotations

import json
from pathlib import Path

from stepwise.spec import dump_folder, from_json, load_pipeline, to_json

from .helpers import load_errors, one, write

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "parallel_mltable" / "pipeline.yml"


def test_the_corpus_case_reads_its_mltable_as_a_table_folder(tmp_path):
    p, warnings = load_pipeline(CORPUS)
    assert p.inputs["sales"].type == "uri_folder" and p.inputs["sales"].table
    assert p.jobs["forecast"].input_decls["sales"].table
    assert not [w for w in warnings if "mltable" in w.message]
    dump_folder(p, tmp_path / "out")
    assert "type: mltable" in (tmp_path / "out" / "pipeline.yml").read_text()
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p


def test_inputs_that_are_no_mltable_keep_their_json():
    p, _ = load_pipeline(CORPUS.parents[1] / "parallel_partition_keys" / "pipeline.yml")
    assert "table" not in to_json(p)["inputs"]["sales"]


COMPONENT = """\
    type: parallel
    inputs:
      sales: {type: mltable}
    input_data: ${{inputs.sales}}
    partition_keys: [store]
    task:
      code: ./src
      entry_script: forecast.py
"""

PIPELINE = """\
    type: pipeline
    inputs:
      sales: {type: uri_folder, path: ./sales}
    jobs:
      forecast:
        type: parallel
        component: ./forecast.yml
        inputs:
          sales: ${{parent.inputs.sales}}
"""


def test_a_components_mltable_input_takes_partition_keys_and_a_folder_does_not(tmp_path):
    files = {"forecast.yml": COMPONENT, "src/forecast.py": "", "sales/MLTable": "paths: []\n"}
    p, _ = load_pipeline(write(tmp_path / "ok", {"pipeline.yml": PIPELINE, **files}))
    assert p.jobs["forecast"].parallel.partition_keys == ["store"]
    folder = {**files, "forecast.yml": COMPONENT.replace("{type: mltable}", "{type: uri_folder}")}
    errors = load_errors(write(tmp_path / "bad", {"pipeline.yml": PIPELINE, **folder}))
    one(errors, "must be a uri_file (a CSV file) or an mltable, not uri_folder")
    assert len(errors) == 1, errors


INLINE = """\
    type: pipeline
    jobs:
      forecast:
        type: parallel
        inputs:
          sales: {type: mltable, path: ./sales}
        input_data: ${{inputs.sales}}
        partition_keys: [store]
        task:
          code: ./src
          entry_script: forecast.py
"""


def test_an_inline_jobs_own_mltable_input_keeps_its_type_and_takes_partition_keys(tmp_path):
    files = {"src/forecast.py": "", "sales/MLTable": "paths: []\n"}
    p, _ = load_pipeline(write(tmp_path / "ok", {"pipeline.yml": INLINE, **files}))
    decl = p.jobs["forecast"].input_decls["sales"]
    assert (decl.type, decl.table) == ("uri_folder", True)
    assert p.jobs["forecast"].parallel.partition_keys == ["store"]
    dump_folder(p, tmp_path / "out")
    assert "type: mltable" in (tmp_path / "out" / "pipeline.yml").read_text()
    assert load_pipeline(tmp_path / "out" / "pipeline.yml")[0] == p
    # A folder given the same way is no table.
    folder = INLINE.replace("{type: mltable, path: ./sales}", "{type: uri_folder, path: ./sales}")
    errors = load_errors(write(tmp_path / "bad", {"pipeline.yml": folder, **files}))
    one(errors, "must be a uri_file (a CSV file) or an mltable, not uri_folder")


def test_the_driver_reads_a_uri_folder_as_files_and_an_mltable_or_a_csv_file_as_a_table(tmp_path):
    files = {"src/forecast.py": "", "sales/MLTable": "paths: []\n", "sales.csv": "store\n1\n"}
    by_type = {}
    for type_, path in (("uri_folder", "./sales"), ("mltable", "./sales"), ("uri_file", "./sales.csv")):
        text = INLINE.replace("{type: mltable, path: ./sales}", f"{{type: {type_}, path: {path}}}")
        text = text.replace("partition_keys: [store]", "mini_batch_size: '1'")
        p, _ = load_pipeline(write(tmp_path / type_, {"pipeline.yml": text, **files}))
        by_type[type_] = p.jobs["forecast"]
    assert by_type["uri_folder"].parallel.files and "--files" in by_type["uri_folder"].command.split()
    for type_ in ("mltable", "uri_file"):
        assert not by_type[type_].parallel.files and "--files" not in by_type[type_].command.split()
    p = load_pipeline(write(tmp_path / "again", {"pipeline.yml": INLINE, **files}))[0]
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p


def test_a_component_jobs_uri_folder_is_read_as_files_and_kept_through_json(tmp_path):
    component = COMPONENT.replace("{type: mltable}", "{type: uri_folder}").replace("partition_keys: [store]", "")
    files = {"forecast.yml": component, "src/forecast.py": "", "sales/MLTable": "paths: []\n"}
    p, _ = load_pipeline(write(tmp_path, {"pipeline.yml": PIPELINE, **files}))
    step = p.jobs["forecast"]
    assert step.parallel.files and "--files" in step.command.split()
    again = from_json(json.loads(json.dumps(to_json(p))), p.files)
    assert again == p and again.jobs["forecast"].parallel.files


def test_a_version_saved_before_the_flag_keeps_its_hash_and_its_driver_reads_as_before():
    p, _ = load_pipeline(CORPUS)
    saved = to_json(p)
    assert "files" not in saved["jobs"]["forecast"]["parallel"]
    assert not from_json(saved, p.files).jobs["forecast"].parallel.files
