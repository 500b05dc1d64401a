"""`type: parallel` jobs with a parallel component: the merge of the component's settings and the
job's, where problems are reported, and the export that reads back the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepwise.spec import InputDecl, OutputDecl, ParentInput, dump_folder, from_json, load_pipeline, to_json
from stepwise.spec.model import ParallelSettings
from stepwise.spec.parallel import merge_component

from .helpers import load_errors, one, write

COMPONENT = """\
    $schema: https://azuremlschemas.azureedge.net/latest/parallelComponent.schema.json
    type: parallel
    name: score_files
    version: "3"
    display_name: Score files
    inputs:
      files: {type: uri_folder}
      scale: {type: integer, default: 2}
    outputs:
      scores: {type: uri_folder}
    input_data: ${{inputs.files}}
    mini_batch_size: "1"
    resources:
      instance_count: 2
    max_concurrency_per_instance: 1
    error_threshold: 5
    mini_batch_error_threshold: 0
    retry_settings:
      max_retries: 1
      timeout: 30
    logging_level: DEBUG
    task:
      type: run_function
      code: ./src
      entry_script: score.py
      program_arguments: --scale ${{inputs.scale}}
      environment: azureml:sklearn@latest
      append_row_to: ${{outputs.scores}}
"""

PIPELINE = """\
    type: pipeline
    inputs:
      files: {type: uri_folder, path: ./data}
    outputs:
      scores: {type: uri_folder}
    jobs:
      score:
        type: parallel
        component: ./components/score/score.yml
        inputs:
          files: ${{parent.inputs.files}}
        outputs:
          scores: ${{parent.outputs.scores}}
        environment_variables: {MODE: fast}
        mini_batch_size: "3"
        max_concurrency_per_instance: 2
        retry_settings:
          max_retries: 4
"""

FILES = {
    "components/score/src/score.py": "def run(batch):\n    return batch\n",
    "data/a.txt": "a",
    "data/b.txt": "b",
}


def case(tmp_path: Path, pipeline: str = PIPELINE, component: str = COMPONENT) -> Path:
    return write(tmp_path, {"pipeline.yml": pipeline, "components/score/score.yml": component, **FILES})


# -- the merge, on plain mappings ---------------------------------------------------------


def test_the_jobs_settings_override_the_components_key_by_key():
    component = {"mini_batch_size": "1", "logging_level": "DEBUG", "error_threshold": 5, "inputs": {}}
    merged, taken = merge_component(component, {"mini_batch_size": "3", "max_concurrency_per_instance": 2})
    assert merged == {
        "mini_batch_size": "3",
        "logging_level": "DEBUG",
        "error_threshold": 5,
        "max_concurrency_per_instance": 2,
    }
    assert taken == {"logging_level", "error_threshold"}


def test_a_mapping_the_job_sets_replaces_the_components_whole():
    # As azure-ai-ml builds the node: the job's retry_settings, else the component's; never a mix.
    component = {"retry_settings": {"max_retries": 1, "timeout": 30}, "resources": {"instance_count": 2}}
    merged, taken = merge_component(component, {"retry_settings": {"max_retries": 4}})
    assert merged == {"retry_settings": {"max_retries": 4}, "resources": {"instance_count": 2}}
    assert taken == {"resources"}


def test_a_setting_the_job_leaves_empty_is_the_components():
    merged, _taken = merge_component({"logging_level": "DEBUG"}, {"logging_level": None})
    assert merged == {"logging_level": "DEBUG"}


# -- loading ------------------------------------------------------------------------------


def test_a_parallel_component_file_loads_with_the_jobs_overrides(tmp_path):
    p, _warnings = load_pipeline(case(tmp_path), known_computes={"cpu-cluster"})
    step = p.jobs["score"]
    assert step.parallel == ParallelSettings(
        input_data="files",
        entry_script="score.py",
        mini_batch_size="3",
        program_arguments="--scale ${{inputs.scale}}",
        append_row_to="scores",
        instance_count=2,
        max_concurrency_per_instance=2,
        error_threshold=5,
        mini_batch_error_threshold=0,
        # The job's retry_settings has no timeout: the default, not the component's 30.
        max_retries=4,
        timeout_s=60,
        logging_level="DEBUG",
        from_component=True,
        files=True,
    )
    assert (step.component_name, step.component_version, step.display_name) == ("score_files", "3", "Score files")
    assert step.input_decls == {"files": InputDecl(type="uri_folder"), "scale": InputDecl(type="integer", default=2)}
    assert step.output_decls == {"scores": OutputDecl()}
    assert step.inputs == {"files": ParentInput("files")}
    assert step.environment == "azureml:sklearn@latest"
    assert step.environment_variables == {"MODE": "fast"}
    # The task's code is relative to the component's file.
    assert step.has_code and p.step_files("score") == {"score.py": b"def run(batch):\n    return batch\n"}
    assert "--mini-batch-size 3 " in step.command and "--max-concurrency-per-instance 2 " in step.command


def test_an_inline_component_mapping_loads_the_same_way(tmp_path):
    inline = "\n".join("      " + line for line in COMPONENT.replace("./src", "./components/score/src").splitlines())
    text = PIPELINE.replace("component: ./components/score/score.yml", "component:\n" + inline)
    p, _ = load_pipeline(write(tmp_path, {"pipeline.yml": text, **FILES}))
    assert p.jobs["score"].parallel.mini_batch_size == "3"
    assert p.jobs["score"].parallel.from_component and p.jobs["score"].component_name == "score_files"


def test_a_task_the_job_sets_is_relative_to_the_pipeline_file(tmp_path):
    text = PIPELINE + "        task:\n          code: ./src\n          entry_script: other.py\n"
    write(tmp_path, {"src/other.py": "def run(b):\n    return b\n"})
    p, _ = load_pipeline(case(tmp_path, pipeline=text))
    # The whole task is the job's: neither the component's code nor its append_row_to remain.
    assert p.jobs["score"].parallel.entry_script == "other.py"
    assert p.jobs["score"].parallel.append_row_to == ""
    assert list(p.step_files("score")) == ["other.py"]


# -- export -------------------------------------------------------------------------------


def test_the_export_writes_the_component_file_and_reads_back_the_same(tmp_path):
    p, _ = load_pipeline(case(tmp_path / "in"))
    dump_folder(p, tmp_path / "export")
    again, _ = load_pipeline(tmp_path / "export" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p
    exported = (tmp_path / "export" / "components" / "score.yml").read_text()
    assert "type: parallel" in exported and "mini_batch_size: '3'" in exported and "code: ../code/score" in exported
    job = (tmp_path / "export" / "pipeline.yml").read_text()
    assert "component: ./components/score.yml" in job and "mini_batch_size" not in job


def test_an_inline_parallel_job_keeps_its_json_and_stays_inline(tmp_path):
    corpus = Path(__file__).resolve().parents[2] / "azureml_corpus" / "parallel" / "pipeline.yml"
    p, _ = load_pipeline(corpus)
    # Fields added with components and partitions stay out, so stored versions keep their hash.
    assert not {"from_component", "partition_keys"} & set(to_json(p)["jobs"]["score"]["parallel"])
    dump_folder(p, tmp_path / "export")
    assert not (tmp_path / "export" / "components").exists()


# -- problems -----------------------------------------------------------------------------


def test_a_problem_of_the_components_settings_is_reported_in_its_file(tmp_path):
    errors = load_errors(case(tmp_path, component=COMPONENT.replace("      entry_script: score.py\n", "")))
    problem = one(errors, "entry_script is required")
    assert problem.file.endswith("score.yml") and problem.field == "task" and problem.line == 22
    assert len(errors) == 1, errors


def test_a_problem_of_the_jobs_override_is_reported_in_the_pipeline(tmp_path):
    errors = load_errors(case(tmp_path, pipeline=PIPELINE.replace('mini_batch_size: "3"', "mini_batch_size: lots")))
    problem = one(errors, "mini_batch_size must be a count")
    assert problem.file.endswith("pipeline.yml") and problem.line == 15
    assert len(errors) == 1, errors


def test_a_validation_problem_of_the_component_points_into_it(tmp_path):
    component = COMPONENT.replace("append_row_to: ${{outputs.scores}}", "append_row_to: ${{outputs.rows}}")
    problem = one(load_errors(case(tmp_path, component=component)), "append_row_to names output 'rows'")
    assert problem.file.endswith("score.yml") and problem.field == "task.append_row_to" and problem.line == 28


@pytest.mark.parametrize(
    ("component", "message", "field"),
    [
        (
            COMPONENT.replace("type: parallel", "type: command"),
            "a parallel job needs a parallel component (type: parallel), not a command component",
            "type",
        ),
        (COMPONENT + "    command: python score.py\n", "a parallel component has no 'command' of its own", "command"),
    ],
)
def test_a_component_of_another_kind_is_one_error_without_follow_ons(tmp_path, component, message, field):
    # A downstream job reads its output: it is not reported again for that.
    report = "      report:\n        command: cat ${{inputs.s}}\n"
    report += "        inputs:\n          s: ${{parent.jobs.score.outputs.scores}}\n"
    pipeline = PIPELINE + report
    errors = load_errors(case(tmp_path, pipeline=pipeline, component=component))
    assert len(errors) == 1, [str(e) for e in errors]
    problem = one(errors, message)
    assert problem.file.endswith("score.yml") and problem.field == field


def test_a_parallel_component_used_by_a_command_job_says_which_type_to_use(tmp_path):
    pipeline = PIPELINE.replace("type: parallel", "type: command").split("        environment_variables")[0]
    errors = load_errors(case(tmp_path, pipeline=pipeline))
    assert len(errors) == 1, [str(e) for e in errors]
    assert one(errors, "a parallel component is used by a job with 'type: parallel'").field == "type"


def test_partition_keys_with_a_mini_batch_size_warn_that_the_size_is_ignored(tmp_path):
    pipeline = """\
        type: pipeline
        jobs:
          score:
            type: parallel
            inputs:
              sales: {type: uri_file, path: ./sales.csv}
            input_data: ${{inputs.sales}}
            mini_batch_size: "10"
            partition_keys: [store, brand]
            task:
              code: ./src
              entry_script: score.py
    """
    files = {"pipeline.yml": pipeline, "sales.csv": "store,brand\n1,a\n", "src/score.py": "def run(b):\n    return b\n"}
    p, warnings = load_pipeline(write(tmp_path, files))
    warning = one(warnings, "mini_batch_size '10' is ignored: partition_keys (store, brand) take effect")
    assert warning.field == "mini_batch_size" and warning.line == 8
    assert p.jobs["score"].parallel.partition_keys == ["store", "brand"]
    assert "--partition-key store --partition-key brand" in p.jobs["score"].command
