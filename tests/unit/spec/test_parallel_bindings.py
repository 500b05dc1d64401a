"""A parallel job's run settings bound to pipeline inputs: read, checked when loaded against the
pipeline's inputs, resolved with a run's values, exported and read back the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepwise.spec import dump_folder, from_json, load_pipeline, to_json
from stepwise.spec.model import ParallelSettings
from stepwise.spec.parallel_bindings import resolve, split

from .helpers import load_errors, one, write

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "parallel_bound_settings" / "pipeline.yml"

PIPELINE = """\
    type: pipeline
    inputs:
      files: {type: uri_folder, path: ./data}
      batch: {type: integer, default: 2}
    jobs:
      score:
        type: parallel
        inputs:
          files: ${{parent.inputs.files}}
        input_data: ${{inputs.files}}
        mini_batch_size: ${{parent.inputs.batch}}
        task:
          code: ./src
          entry_script: score.py
"""

FILES = {"src/score.py": "def run(batch):\n    return batch\n", "data/a.txt": "a"}


def case(tmp_path: Path, pipeline: str = PIPELINE) -> Path:
    return write(tmp_path, {"pipeline.yml": pipeline, **FILES})


# -- reading ------------------------------------------------------------------------------


def test_split_takes_the_bound_settings_out_and_leaves_the_values():
    raw = {
        "mini_batch_size": "${{parent.inputs.batch}}",
        "retry_settings": {"max_retries": "${{ parent.inputs.retries }}", "timeout": 30},
        "logging_level": "INFO",
    }
    rest, bound, found = split(raw)
    assert rest == {"retry_settings": {"timeout": 30}, "logging_level": "INFO"}
    assert bound == {"mini_batch_size": "batch", "retry_settings.max_retries": "retries"}
    assert found == []
    # The job's mapping is not changed under it.
    assert raw["retry_settings"]["max_retries"] == "${{ parent.inputs.retries }}"


def test_split_refuses_any_other_expression():
    _rest, bound, found = split({"resources": {"instance_count": "${{inputs.nodes}}"}})
    assert bound == {}
    assert found == [
        (
            "resources.instance_count must be a value or ${{parent.inputs.NAME}}, got '${{inputs.nodes}}'",
            ("resources", "instance_count"),
        ),
    ]


def test_the_corpus_case_loads_every_setting_bound():
    p, _warnings = load_pipeline(CORPUS)
    settings = p.jobs["count"].parallel
    assert settings.bound == {
        "mini_batch_size": "batch_size",
        "resources.instance_count": "nodes",
        "max_concurrency_per_instance": "processes",
        "error_threshold": "allowed_failures",
        "mini_batch_error_threshold": "allowed_failures",
        "retry_settings.max_retries": "retries",
        "retry_settings.timeout": "batch_timeout",
        "logging_level": "log_level",
    }
    command = p.jobs["count"].command
    assert "--mini-batch-size ${{parent.inputs.batch_size}}" in command
    assert "--instance-count ${{parent.inputs.nodes}}" in command


def test_a_bound_setting_round_trips_through_export_and_json(tmp_path):
    p, _ = load_pipeline(case(tmp_path / "in"))
    dump_folder(p, tmp_path / "out")
    assert "mini_batch_size: ${{parent.inputs.batch}}" in (tmp_path / "out" / "pipeline.yml").read_text()
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p
    assert from_json(json.loads(json.dumps(to_json(p))), p.files) == p


def test_unbound_parallel_jobs_keep_their_json():
    corpus = CORPUS.parents[1] / "parallel" / "pipeline.yml"
    p, _ = load_pipeline(corpus)
    assert "bound" not in to_json(p)["jobs"]["score"]["parallel"]


# -- checked when loaded ------------------------------------------------------------------


def test_a_binding_to_a_missing_input_is_one_error_naming_it(tmp_path):
    errors = load_errors(case(tmp_path, PIPELINE.replace("${{parent.inputs.batch}}", "${{parent.inputs.bacth}}")))
    problem = one(errors, "mini_batch_size is bound to pipeline input 'bacth', which is not declared")
    assert "(declared: batch, files)" in problem.message
    assert problem.job == "score" and problem.field == "mini_batch_size" and problem.line == 11
    assert len(errors) == 1, errors


@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ("{type: boolean, default: true}", "mini_batch_size is bound to pipeline input 'batch' of type boolean"),
        ("{type: uri_folder, path: ./data}", "of type uri_folder: it takes integer or string inputs"),
        ("{type: integer, default: 0}", "mini_batch_size = 0: mini_batch_size"),
        ("{type: string, default: lots}", "mini_batch_size = 'lots'"),
    ],
)
def test_an_input_the_setting_cannot_take_is_refused(tmp_path, decl, message):
    errors = load_errors(case(tmp_path, PIPELINE.replace("{type: integer, default: 2}", decl)))
    problem = one(errors, message)
    assert problem.field == "mini_batch_size"
    assert len(errors) == 1, errors


def test_a_string_input_without_default_is_accepted_and_checked_when_the_run_starts(tmp_path):
    text = PIPELINE.replace("{type: integer, default: 2}", "{type: string}").replace(
        "        mini_batch_size: ${{parent.inputs.batch}}\n",
        "        mini_batch_size: ${{parent.inputs.batch}}\n        logging_level: ${{parent.inputs.batch}}\n",
    )
    errors = load_errors(case(tmp_path, text.replace("{type: string}", "{type: integer}")))
    one(errors, "logging_level is bound to pipeline input 'batch' of type integer: it takes string inputs")
    p, _ = load_pipeline(case(tmp_path / "ok", text))
    assert p.jobs["score"].parallel.bound == {"mini_batch_size": "batch", "logging_level": "batch"}


def test_a_component_cannot_bind_its_own_settings(tmp_path):
    component = """\
        type: parallel
        inputs:
          files: {type: uri_folder}
        input_data: ${{inputs.files}}
        mini_batch_size: ${{parent.inputs.batch}}
        task:
          code: ./src
          entry_script: score.py
    """
    pipeline = """\
        type: pipeline
        inputs:
          files: {type: uri_folder, path: ./data}
          batch: {type: integer, default: 2}
        jobs:
          score:
            type: parallel
            component: ./comp/score.yml
            inputs:
              files: ${{parent.inputs.files}}
    """
    files = {"pipeline.yml": pipeline, "comp/score.yml": component, "comp/src/score.py": "", "data/a.txt": "a"}
    errors = load_errors(write(tmp_path, files))
    problem = one(errors, "mini_batch_size of a parallel component must be a value")
    assert problem.file.endswith("score.yml") and problem.line == 5
    assert len(errors) == 1, errors
    # The same binding on the job that uses the component is fine.
    job = pipeline + "        mini_batch_size: ${{parent.inputs.batch}}\n"
    ok = {**files, "pipeline.yml": job, "comp/score.yml": component.replace("${{parent.inputs.batch}}", '"1"')}
    p, _ = load_pipeline(write(tmp_path / "ok", ok))
    assert p.jobs["score"].parallel.bound == {"mini_batch_size": "batch"}
    dump_folder(p, tmp_path / "out")
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p


def test_a_job_binding_one_retry_setting_keeps_the_other_on_export(tmp_path):
    component = """\
        type: parallel
        inputs:
          files: {type: uri_folder}
        input_data: ${{inputs.files}}
        task:
          code: ./src
          entry_script: score.py
    """
    pipeline = """\
        type: pipeline
        inputs:
          files: {type: uri_folder, path: ./data}
          retries: {type: integer, default: 3}
        jobs:
          score:
            type: parallel
            component: ./comp/score.yml
            inputs:
              files: ${{parent.inputs.files}}
            retry_settings:
              max_retries: ${{parent.inputs.retries}}
              timeout: 45
    """
    files = {"pipeline.yml": pipeline, "comp/score.yml": component, "comp/src/score.py": "", "data/a.txt": "a"}
    p, _ = load_pipeline(write(tmp_path, files))
    assert p.jobs["score"].parallel.timeout_s == 45
    dump_folder(p, tmp_path / "out")
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again == p


# -- resolved when the run starts ---------------------------------------------------------


def bound(**bound: str) -> ParallelSettings:
    return ParallelSettings(input_data="files", entry_script="score.py", bound=bound)


def test_resolve_coerces_a_runs_text_values():
    settings = bound(**{"resources.instance_count": "n", "retry_settings.timeout": "t", "logging_level": "level"})
    resolved = resolve(settings, {"n": "3", "t": 90.0, "level": "debug"})
    assert (resolved.instance_count, resolved.timeout_s, resolved.logging_level) == (3, 90, "DEBUG")
    assert resolved.bound == {}


def test_an_optional_input_left_unset_keeps_the_default():
    resolved = resolve(bound(max_concurrency_per_instance="p"), {"p": None})
    assert resolved.max_concurrency_per_instance == 1 and resolved.bound == {}


def test_a_value_the_setting_refuses_names_the_setting_the_input_and_the_value():
    with pytest.raises(ValueError) as info:
        resolve(bound(max_concurrency_per_instance="procs", mini_batch_size="size"), {"procs": 0, "size": "2mb"})
    assert str(info.value) == (
        "parallel run setting max_concurrency_per_instance = 0: max_concurrency_per_instance must be a whole "
        "number of at least 1, got 0 (pipeline input 'procs')"
    )
