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
