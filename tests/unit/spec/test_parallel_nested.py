"""`type: parallel` jobs inside pipeline components: expanded as command jobs are, with the
component's inputs bound into the job's inputs and run settings, checked, exported and read back."""

from __future__ import annotations

import json
from pathlib import Path

from stepwise.spec import ParentInput, dump_folder, from_json, load_pipeline, to_json
from stepwise.spec.nesting import check

from .helpers import load_errors, one, write

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "parallel_in_pipeline_component" / "pipeline.yml"

PIPELINE = """\
    type: pipeline
    inputs:
      files: {type: uri_folder, path: ./data}
      size: {type: string, default: "2"}
    jobs:
      outer:
        type: pipeline
        component: ./scoring.yml
        inputs:
          files: ${{parent.inputs.files}}
          size: ${{parent.inputs.size}}
          processes: 3
"""

COMPONENT = """\
    type: pipeline
    inputs:
      files: {type: uri_folder}
      size: {type: string}
      processes: {type: integer}
      retries: {type: integer, default: 4}
    jobs:
      score:
        type: parallel
        inputs:
          files: ${{parent.inputs.files}}
        input_data: ${{inputs.files}}
        mini_batch_size: ${{parent.inputs.size}}
        max_concurrency_per_instance: ${{parent.inputs.processes}}
        retry_settings:
          max_retries: ${{parent.inputs.retries}}
        task:
          code: ./src
          entry_script: score.py
"""

FILES = {"src/score.py": "def run(batch):\n    return batch\n", "data/a.txt": "a"}


def case(tmp_path: Path, pipeline: str = PIPELINE, component: str = COMPONENT, **more: str) -> Path:
    return write(tmp_path, {"pipeline.yml": pipeline, "scoring.yml": component, **FILES, **more})


def test_the_inner_parallel_step_takes_the_components_bindings(tmp_path):
    p, _ = load_pipeline(case(tmp_path))
    step = p.jobs["outer__score"]
    assert step.inputs == {"files": ParentInput("files")}
    settings = step.parallel
    # A pipeline input stays bound (resolved per run); a value and a default are set now.
    assert settings.bound == {"mini_batch_size": "size"}
    assert (settings.max_concurrency_per_instance, settings.max_retries) == (3, 4)
    assert "--max-concurrency-per-instance 3 " in step.command
    assert "--mini-batch-size ${{parent.inputs.size}}" in step.command
    assert list(p.step_files("outer__score")) == ["score.py"]
    assert p.groups["outer"].job_parallel == {
        "score": {
            "mini_batch_size": "size",
            "max_concurrency_per_instance": "processes",
            "retry_settings.max_retries": "retries",
        }
    }
    assert check(p) == []


def test_it_round_trips_through_export_and_json(tmp_path):
    p, _ = load_pipeline(case(tmp_path / "in"))
    dump_folder(p, tmp_path / "out")
    exported = (tmp_path / "out" / "components" / "outer.yml").read_text()
    assert "max_concurrency_per_instance: ${{parent.inputs.processes}}" in exported
    assert "code: ../code/outer__score" in exported
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p


def test_the_corpus_case_round_trips(tmp_path):
    p, _ = load_pipeline(CORPUS)
    assert p.jobs["scoring__score"].parallel.bound == {"mini_batch_size": "batch_size"}
    dump_folder(p, tmp_path / "out")
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p


def test_a_parallel_component_file_inside_a_pipeline_component(tmp_path):
    component = COMPONENT.replace(
        """        type: parallel
        inputs:
          files: ${{parent.inputs.files}}
        input_data: ${{inputs.files}}
""",
        """        type: parallel
        component: ./score.yml
        inputs:
          files: ${{parent.inputs.files}}
""",
    ).replace("        task:\n          code: ./src\n          entry_script: score.py\n", "")
    parallel = """\
        type: parallel
        name: score
        inputs:
          files: {type: uri_folder}
        input_data: ${{inputs.files}}
        mini_batch_size: "5"
        task:
          code: ./src
          entry_script: score.py
    """
    p, _ = load_pipeline(case(tmp_path / "in", component=component, **{"score.yml": parallel}))
    step = p.jobs["outer__score"]
    assert step.parallel.from_component and step.parallel.bound == {"mini_batch_size": "size"}
    dump_folder(p, tmp_path / "out")
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p


def test_a_setting_bound_to_an_input_the_component_lacks_is_one_error(tmp_path):
    errors = load_errors(
        case(tmp_path, component=COMPONENT.replace("${{parent.inputs.processes}}", "${{parent.inputs.procs}}"))
    )
    problem = one(errors, "pipeline component 'outer' has no input 'procs'")
    assert problem.job == "outer__score" and problem.field == "max_concurrency_per_instance"
    assert problem.file.endswith("scoring.yml")
    assert len(errors) == 1, errors


def test_a_value_the_component_job_gives_that_the_setting_refuses_names_both(tmp_path):
    errors = load_errors(case(tmp_path, pipeline=PIPELINE.replace("processes: 3", "processes: 0")))
    problem = one(errors, "max_concurrency_per_instance = 0: max_concurrency_per_instance must be a whole number")
    assert problem.job == "outer__score"
    assert len(errors) == 1, errors


def test_a_pipeline_input_of_the_wrong_type_is_refused_through_the_component(tmp_path):
    text = PIPELINE.replace('size: {type: string, default: "2"}', "size: {type: boolean, default: true}")
    errors = load_errors(case(tmp_path, pipeline=text))
    one(errors, "mini_batch_size is bound to pipeline input 'size' of type boolean")
    assert len(errors) == 1, errors


def test_data_given_to_a_bound_setting_is_refused(tmp_path):
    text = PIPELINE.replace("size: ${{parent.inputs.size}}", "size: ${{parent.inputs.files}}")
    errors = load_errors(case(tmp_path, pipeline=text))
    one(errors, "mini_batch_size is bound to pipeline input 'files' of type uri_folder")
    assert len(errors) == 1, errors
