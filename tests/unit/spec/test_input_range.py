"""Azure ML's `min`/`max` on integer and number inputs: read, checked, written back only when set."""

from __future__ import annotations

import json
import textwrap

import pytest

from stepwise.hashing import pipeline_content_hash
from stepwise.spec import dump_folder, from_json, load_pipeline, parse_text, to_json
from stepwise.spec.bindings import coerce_literal, input_range_error
from stepwise.spec.serialize import yaml_files

from .helpers import EXAMPLES, errors_of, one, write

COMPONENT = """
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: train
inputs:
  epochs: {{type: integer, default: 3, min: 1, max: 10}}
  rate: {{type: number, min: 0.0, max: 1}}
command: echo ${{{{inputs.epochs}}}} ${{{{inputs.rate}}}}
"""

PIPELINE = """
type: pipeline
inputs:
  epochs: {{type: integer, default: {epochs}, min: 0}}
  rate: 0.5
jobs:
  train:
    type: command
    component: ./train.yml
    inputs:
      epochs: ${{{{parent.inputs.epochs}}}}
      rate: ${{{{parent.inputs.rate}}}}
"""


def load(tmp_path, *, epochs: int = 5):
    path = write(tmp_path, {"pipeline.yml": PIPELINE.format(epochs=epochs), "train.yml": COMPONENT.format()})
    return load_pipeline(path)


def test_a_component_and_the_pipeline_declare_bounds(tmp_path):
    p, warnings = load(tmp_path)
    decls = p.jobs["train"].input_decls
    assert (decls["epochs"].min, decls["epochs"].max) == (1, 10)
    assert (decls["rate"].min, decls["rate"].max) == (0.0, 1)
    assert (p.inputs["epochs"].min, p.inputs["epochs"].max) == (0, None)
    assert not [w for w in warnings if "min" in w.message or "max" in w.message]


def component_errors(decl: str, value: str = "${{parent.inputs.n}}", default: object = 2):
    return errors_of(f"""
        type: pipeline
        inputs:
          n: {{type: number, default: {default}}}
        jobs:
          a:
            type: command
            inputs:
              x: {value}
            component:
              command: echo ${{{{inputs.x}}}}
              inputs:
                x: {decl}
        """)


@pytest.mark.parametrize(
    ("decl", "field", "needle"),
    [
        ("{type: integer, min: one}", "inputs.x.min", "min must be a number, got 'one'"),
        ("{type: integer, max: [1]}", "inputs.x.max", "max must be a number"),
        ("{type: integer, max: true}", "inputs.x.max", "max must be a number"),
        ("{type: integer, min: 1.5}", "inputs.x.min", "min: expected an integer, got 1.5"),
        ("{type: integer, min: 5, max: 1}", "inputs.x.min", "min 5 is above max 1"),
        ("{type: string, min: 1}", "inputs.x.min", "min bounds integer and number inputs only"),
        ("{type: boolean, max: 1}", "inputs.x.max", "max bounds integer and number inputs only"),
        ("{type: integer, default: 0, min: 1}", "inputs.x.default", "default: 0 is below the minimum 1"),
        ("{type: number, default: 2.5, max: 2}", "inputs.x.default", "default: 2.5 is above the maximum 2"),
    ],
)
def test_a_bad_bound_is_an_error_naming_the_field(decl, field, needle):
    problem = one(component_errors(decl), needle)
    assert (problem.job, problem.field) == ("a", field)


def test_bounds_written_as_text_read_as_azure_ml_reads_them():
    p, _ = parse_text(
        textwrap.dedent("""
        type: pipeline
        jobs:
          a:
            type: command
            inputs: {x: 3}
            component:
              command: echo ${{inputs.x}}
              inputs:
                x: {type: integer, min: "1", max: "5.0"}
        """)
    )
    decl = p.jobs["a"].input_decls["x"]
    assert (decl.min, decl.max) == (1, 5)


def test_a_literal_bound_to_an_input_is_checked_against_its_range():
    problem = one(component_errors("{type: integer, min: 1, max: 9}", value="12"), "12 is above the maximum 9")
    assert (problem.job, problem.field) == ("a", "inputs.x")


def test_a_pipeline_default_outside_the_range_of_the_input_it_feeds_is_an_error():
    problem = one(component_errors("{type: number, min: 3}", default=2), "2 is below the minimum 3")
    assert "pipeline input 'n'" in problem.message and problem.field == "inputs.x"


def test_a_pipeline_input_default_outside_its_own_range_is_an_error():
    problems = errors_of("""
        type: pipeline
        inputs:
          epochs: {type: integer, default: 0, min: 1}
        jobs:
          a: {type: command, command: echo hi}
        """)
    problem = one(problems, "default: 0 is below the minimum 1")
    assert problem.field == "inputs.epochs.default"


def test_bounds_are_inclusive():
    assert coerce_literal("integer", "1", minimum=1, maximum=10) == 1
    assert coerce_literal("number", 1.0, minimum=0, maximum=1) == 1.0
    with pytest.raises(ValueError, match="0 is below the minimum 1"):
        coerce_literal("integer", "0", minimum=1)
    with pytest.raises(ValueError, match=r"1\.5 is above the maximum 1"):
        coerce_literal("number", 1.5, maximum=1)


def test_a_run_value_is_checked_against_the_pipeline_input_and_the_inputs_it_feeds(tmp_path):
    p, _ = load(tmp_path)
    assert input_range_error(p, "epochs", 10) is None
    assert input_range_error(p, "epochs", -1) == "-1 is below the minimum 0"
    assert input_range_error(p, "epochs", 0) == "0 is below the minimum 1 of job 'train' input 'epochs'"
    assert input_range_error(p, "rate", 1.5) == "1.5 is above the maximum 1 of job 'train' input 'rate'"
    assert input_range_error(p, "epochs", None) is None


def test_export_writes_the_bounds_and_import_reads_them_back(tmp_path):
    p, _ = load(tmp_path / "src")
    files = yaml_files(p)
    component = files["components/train.yml"].decode()
    assert "min: 1" in component and "max: 10" in component
    assert "epochs:\n    type: integer\n    default: 5\n    min: 0\n" in files["pipeline.yml"].decode()
    dump_folder(p, tmp_path / "export")
    again, _ = load_pipeline(tmp_path / "export" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p


def test_bounds_are_stored_only_when_set_so_older_versions_keep_their_hash(tmp_path):
    p, _ = load(tmp_path)
    stored = to_json(p)
    assert stored["jobs"]["train"]["input_decls"]["epochs"]["min"] == 1
    assert stored["inputs"]["epochs"]["min"] == 0 and "max" not in stored["inputs"]["epochs"]
    before = pipeline_content_hash(p)
    for decl in [*p.inputs.values(), *p.jobs["train"].input_decls.values()]:
        decl.min = decl.max = None
    unbounded = to_json(p)
    assert all("min" not in d and "max" not in d for d in unbounded["inputs"].values())
    # A version saved before bounds existed: its stored JSON reads back to the same JSON and hash.
    assert to_json(from_json(json.loads(json.dumps(unbounded)), p.files)) == unbounded
    assert pipeline_content_hash(p) == pipeline_content_hash(from_json(unbounded, p.files)) != before
    example, _ = load_pipeline(EXAMPLES / "sklearn-iris" / "pipeline.yml")
    # Computed before min/max existed: a version stored then must still match a re-import.
    assert pipeline_content_hash(example) == "cb481d16ee2ae993ec04e7f217614aac4a523df30473759141d9f6ca787c2442"


def test_a_run_value_is_checked_against_a_pipeline_component_input_it_feeds(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """
                type: pipeline
                inputs:
                  n: 5
                jobs:
                  group:
                    type: pipeline
                    component: ./group.yml
                    inputs:
                      n: ${{parent.inputs.n}}
                """,
            "group.yml": """
                type: pipeline
                name: group
                inputs:
                  n: {type: integer, min: 2, max: 8}
                jobs:
                  a:
                    type: command
                    command: echo ${{inputs.n}}
                    inputs:
                      n: ${{parent.inputs.n}}
                """,
        },
    )
    p, _ = load_pipeline(path)
    assert p.groups["group"].input_decls["n"].max == 8
    assert input_range_error(p, "n", 9) == "9 is above the maximum 8 of job 'group' input 'n'"
    assert input_range_error(p, "n", 8) is None
