"""`type: parallel` jobs: read, checked, exported and read back the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepwise.spec import (
    InputDecl,
    OutputDecl,
    ParentOutputRef,
    dump_folder,
    from_json,
    load_pipeline,
    render_command,
    to_json,
)
from stepwise.spec.model import ParallelSettings

from .helpers import load_errors, one, write

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "parallel"
ROOT = Path(__file__).resolve().parents[3]

JOB = """\
    type: pipeline
    inputs:
      files: {type: uri_folder, path: ./data}
    jobs:
      score:
        type: parallel
        inputs:
          files: ${{parent.inputs.files}}
        outputs:
          scores: {type: uri_folder}
        input_data: ${{inputs.files}}
        mini_batch_size: "2"
        task:
          type: run_function
          code: ./src
          entry_script: score.py
          append_row_to: ${{outputs.scores}}
"""


def job_with(tmp_path: Path, old: str, new: str) -> Path:
    text = JOB.replace(old, new)
    assert text != JOB or old == new
    return write(tmp_path, {"pipeline.yml": text, "src/score.py": "def run(b):\n    return b\n", "data/a.txt": "a"})


def test_the_corpus_sample_loads_as_a_parallel_step():
    p, warnings = load_pipeline(CORPUS / "pipeline.yml", known_computes={"cpu-cluster"})
    assert all(w.severity == "warning" for w in warnings)
    step = p.jobs["score"]
    assert step.parallel == ParallelSettings(
        input_data="readings",
        entry_script="score.py",
        mini_batch_size="1",
        program_arguments="--scale 2 --fail_on ${{inputs.fail_on}}",
        append_row_to="scores",
        instance_count=1,
        max_concurrency_per_instance=2,
        error_threshold=-1,
        mini_batch_error_threshold=1,
        max_retries=1,
        timeout_s=30,
        logging_level="INFO",
        files=True,  # readings is a uri_folder: its files are the items
    )
    assert step.input_decls["readings"] == InputDecl(type="uri_folder")
    assert step.output_decls == {"scores": OutputDecl()}
    assert step.outputs == {"scores": ParentOutputRef("scores")}
    assert step.has_code and "code/score/score.py" in p.files
    assert len([k for k in p.files if k.startswith("data/readings/")]) == 20
    assert step.environment == {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"}
    assert step.command.startswith("python -m stepwise.parallel.driver --input-data ${{inputs.readings}} ")
    assert step.command.endswith("-- --scale 2 --fail_on ${{inputs.fail_on}}")
    # `resources` means something to a parallel job: not reported as ignored.
    assert not [w for w in warnings if w.field == "resources"]


def test_the_corpus_sample_round_trips_through_export_and_json(tmp_path):
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    dump_folder(p, tmp_path / "export")
    again, _ = load_pipeline(tmp_path / "export" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p
    exported = (tmp_path / "export" / "pipeline.yml").read_text()
    assert "type: parallel" in exported and "entry_script: score.py" in exported
    # Written inline: no command component stands in for it.
    assert not (tmp_path / "export" / "components").exists()


def test_command_jobs_keep_their_json_without_a_parallel_key(tmp_path):
    p, _ = load_pipeline(write(tmp_path, {"pipeline.yml": "type: pipeline\njobs:\n  a:\n    command: echo hi\n"}))
    assert "parallel" not in to_json(p)["jobs"]["a"]


def test_the_corpus_sample_runs_locally(tmp_path):
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "code").mkdir()
    for rel, data in p.step_files("score").items():
        (tmp_path / "code" / rel).write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT), STEPWISE_METRICS_FILE=str(tmp_path / "m.jsonl"))
    command = render_command(
        p.jobs["score"].command, inputs={"readings": str(CORPUS / "data"), "fail_on": ""}, outputs={"scores": str(out)}
    )
    command = command.replace("python -m", f"{sys.executable} -m", 1)
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path / "code", env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = (out / "parallel_run_step.txt").read_text().splitlines()
    # reading_03.txt holds 3 and 9: (3 + 9) * --scale 2.
    assert len(lines) == 20 and lines[2] == "reading_03.txt 24"


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("type: run_function", "type: run_script", "task.type", "unknown task type 'run_script' (only run_function)"),
        ("entry_script: score.py", "program_arguments: -x", "task", "entry_script is required"),
        ("entry_script: score.py", "entry_script: ../score.py", "task.entry_script", "relative path inside"),
        ("entry_script: score.py", "entry_script: /etc/score.py", "task.entry_script", "relative path inside"),
        ("entry_script: score.py", "entry_script: other.py", "task.entry_script", "is not in the code folder"),
        ("entry_script: score.py", "entry_script: score.sh", "task.entry_script", "must be a Python file"),
        ('mini_batch_size: "2"', 'mini_batch_size: "2 files"', "mini_batch_size", "mini_batch_size must be a count"),
        ('mini_batch_size: "2"', "mini_batch_size: 0", "mini_batch_size", "at least 1"),
        ("input_data: ${{inputs.files}}", "input_data: ./data", "input_data", "input_data must be ${{inputs.NAME}}"),
        ("input_data: ${{inputs.files}}", "input_data: ${{inputs.nope}}", "input_data", "names input 'nope'"),
        ("${{outputs.scores}}", "${{outputs.other}}", "task.append_row_to", "names output 'other'"),
        ("${{outputs.scores}}", "./out", "task.append_row_to", "append_row_to must be ${{outputs.NAME}}"),
        ('mini_batch_size: "2"', "error_threshold: -2", "error_threshold", "at least -1"),
        ('mini_batch_size: "2"', "max_concurrency_per_instance: 0", "max_concurrency_per_instance", "at least 1"),
        ('mini_batch_size: "2"', "retry_settings: {timeout: 0}", "retry_settings.timeout", "at least 1"),
        ('mini_batch_size: "2"', "logging_level: LOUD", "logging_level", "logging_level must be one of"),
        ("code: ./src", "code: ../elsewhere", "task.code", "outside"),
        ("code: ./src", "environment: azureml:env@latest", "task.code", "needs task.code"),
        ('mini_batch_size: "2"', "command: python x.py", "command", "no 'command' of its own"),
        (
            'mini_batch_size: "2"',
            "partition_keys: [region]",
            "partition_keys",
            "partition_keys group a table's rows: input_data 'files' must be a uri_file (a CSV file) or an mltable",
        ),
        ('mini_batch_size: "2"', "partition_keys: region", "partition_keys", "must be a list of column names"),
        ('mini_batch_size: "2"', "partition_keys: [a, a]", "partition_keys", "names a column twice"),
        (
            "entry_script: score.py",
            "entry_script: score.py\n          program_arguments: --model ${{inputs.model}}",
            "task.program_arguments",
            "program_arguments uses ${{inputs.model}} but no input 'model' is declared",
        ),
        (
            "entry_script: score.py",
            "entry_script: score.py\n          program_arguments: \"--x '${{inputs.files}}'\"",
            "task.program_arguments",
            "inside single quotes",
        ),
    ],
)
def test_bad_parallel_fields_are_named(tmp_path, old, new, field, message):
    problem = one(load_errors(job_with(tmp_path, old, new)), message)
    assert problem.job == "score" and problem.field == field
    assert problem.file.endswith("pipeline.yml") and problem.line is not None


def test_input_data_must_be_data(tmp_path):
    path = job_with(tmp_path, "files: ${{parent.inputs.files}}", "files: just-text")
    one(load_errors(path), "input_data 'files' must be data (uri_file, uri_folder), not string")


def test_a_missing_parallel_component_file_is_one_error_at_the_job(tmp_path):
    text = "type: pipeline\njobs:\n  a:\n    type: parallel\n    component: ./p.yml\n"
    path = write(tmp_path, {"pipeline.yml": text})
    errors = load_errors(path)
    assert len(errors) == 1, errors
    problem = one(errors, "'./p.yml' does not exist")
    assert problem.field == "component" and problem.line == 5


def test_a_parallel_job_without_a_task_says_what_it_needs(tmp_path):
    path = write(tmp_path, {"pipeline.yml": "type: pipeline\njobs:\n  a:\n    type: parallel\n"})
    errors = load_errors(path)
    assert one(errors, "task is required").field == "task"
    assert one(errors, "input_data is required").field == "input_data"
