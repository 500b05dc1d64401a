"""Registered parallel components: registration with code, `azureml:` references from parallel
jobs with their overrides, problems named in the file, and a pipeline's parallel step registered."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from pipelines_ui import component_selectors as cs
from pipelines_ui import components, services
from pipelines_ui.models import Component
from stepwise.spec import SpecError, dump_folder, load_pipeline
from tests.pipelines_ui.test_components import client_for

SCORE = """\
    type: parallel
    name: score
    version: 2
    display_name: Score files
    inputs:
      files: {type: uri_folder}
      scale: {type: integer, default: 2}
    outputs:
      scores: {type: uri_folder}
    input_data: ${{inputs.files}}
    mini_batch_size: "4"
    retry_settings:
      max_retries: 1
      timeout: 30
    task:
      type: run_function
      code: ./src
      entry_script: score.py
      program_arguments: --scale ${{inputs.scale}}
      environment_variables: {MODE: component}
      append_row_to: ${{outputs.scores}}
"""

PIPELINE = """\
    type: pipeline
    inputs:
      files: {type: uri_folder, path: ./data}
      size: {type: integer, default: 3}
    jobs:
      by_version:
        type: parallel
        component: azureml:score:2
        inputs:
          files: ${{parent.inputs.files}}
        mini_batch_size: ${{parent.inputs.size}}
        max_concurrency_per_instance: 2
      by_latest:
        type: parallel
        component: azureml:score@latest
        inputs:
          files: ${{parent.inputs.files}}
"""


def write_component(folder: Path, text: str = SCORE) -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "score.py").write_text("def run(batch):\n    return batch\n")
    (folder / "score.yml").write_text(textwrap.dedent(text))
    return folder / "score.yml"


def write_pipeline(folder: Path, text: str = PIPELINE) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "a.txt").write_text("1\n")
    (folder / "pipeline.yml").write_text(textwrap.dedent(text))
    return folder / "pipeline.yml"


def test_the_command_registers_a_parallel_component_with_its_code(db, team, alice, tmp_path, capsys):
    args = ["component", "register", str(write_component(tmp_path)), "--team", team.name, "--user", "alice"]
    with pytest.raises(SystemExit) as exited:
        call_command("pipelines", *args)
    assert exited.value.code == 0
    assert "registered component score version 2" in capsys.readouterr().out
    c = Component.objects.get()
    assert (c.name, c.version, c.display_name) == ("score", "2", "Score files")
    assert c.spec["type"] == "parallel" and c.spec["mini_batch_size"] == "4"
    assert c.spec["task"]["entry_script"] == "score.py" and "code" not in c.spec["task"]
    assert c.spec["task"]["environment_variables"] == {"MODE": "component"}
    assert cs.component_code(c) == {"score.py": b"def run(batch):\n    return batch\n"}


def test_jobs_use_it_by_version_and_latest_with_their_overrides(db, team, alice, compute, tmp_path):
    components.component_register_file(team=team, path=write_component(tmp_path / "c"), user=alice)
    version = services.pipeline_import(team=team, path=write_pipeline(tmp_path / "p"), user=alice)
    spec = services.version_spec_with_files(version)
    pinned, latest = spec.jobs["by_version"], spec.jobs["by_latest"]
    assert (pinned.component_name, pinned.component_version) == ("score", "2")
    assert pinned.parallel.bound == {"mini_batch_size": "size"}
    assert pinned.parallel.max_concurrency_per_instance == 2 and pinned.parallel.timeout_s == 30
    assert latest.parallel.mini_batch_size == "4" and latest.parallel.bound == {}
    assert latest.environment_variables == {"MODE": "component"}
    assert spec.files["code/by_latest/score.py"] == b"def run(batch):\n    return batch\n"

    # The export carries the component as a file: it imports where nothing is registered.
    dump_folder(spec, tmp_path / "export")
    again, _ = load_pipeline(tmp_path / "export" / "pipeline.yml")
    assert again == spec


def test_a_bad_parallel_component_names_the_file_and_field_and_saves_nothing(db, team, alice, tmp_path):
    path = write_component(tmp_path, SCORE.replace("      entry_script: score.py\n", ""))
    with pytest.raises(SpecError) as caught:
        components.component_register_file(team=team, path=path, user=alice)
    errors = [p for p in caught.value.problems if p.severity == "error"]
    assert [(p.field, p.line) for p in errors] == [("task", 15)]
    assert "entry_script is required" in errors[0].message and errors[0].file.endswith("score.yml")
    assert not Component.objects.exists()


def test_a_command_job_naming_a_registered_parallel_component_says_to_use_type_parallel(
    db, team, alice, compute, tmp_path
):
    components.component_register_file(team=team, path=write_component(tmp_path / "c"), user=alice)
    text = PIPELINE.replace(
        "type: parallel\n        component: azureml:score:2", "type: command\n        component: azureml:score:2"
    )
    with pytest.raises(SpecError) as caught:
        services.pipeline_import(team=team, path=write_pipeline(tmp_path / "p", text), user=alice)
    errors = [p for p in caught.value.problems if p.severity == "error"]
    assert [(p.job, p.message) for p in errors] == [
        ("by_version", "a parallel component is used by a job with 'type: parallel'")
    ]


def test_a_parallel_step_of_a_pipeline_registers_as_a_parallel_component(db, team, alice, compute, tmp_path):
    components.component_register_file(team=team, path=write_component(tmp_path / "c"), user=alice)
    version = services.pipeline_import(team=team, path=write_pipeline(tmp_path / "p"), user=alice)
    done = components.component_register_step(
        team=team, version=version, step_name="by_version", user=alice, name="score_fast"
    )
    c = done.component
    # Its binding to the pipeline's input is the pipeline's: the component keeps values only.
    assert c.spec["type"] == "parallel" and "mini_batch_size" not in c.spec
    assert c.spec["max_concurrency_per_instance"] == 2
    page = client_for(alice).get(reverse("component_detail", args=[c.pk])).content.decode()
    assert "entry_script: score.py" in page
