"""`type: pipeline` jobs: pipeline components expanded into qualified steps, and written back."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.spec import (
    JobOutput,
    ParentInput,
    ParentOutputRef,
    dump_folder,
    from_json,
    load_pipeline,
    to_json,
    validate_pipeline,
    yaml_files,
)
from stepwise.spec.nesting import MAX_DEPTH

from .helpers import load_errors, one, write

CORPUS = Path(__file__).resolve().parents[2] / "azureml_corpus" / "pipeline_component"


def _command(name: str = "work") -> str:
    return f"""\
        type: command
        name: {name}
        inputs:
          value: {{type: string}}
        outputs:
          out: {{type: uri_folder}}
        command: echo ${{{{inputs.value}}}} > ${{{{outputs.out}}}}/v.txt
        """


def _wrapper(inner: str) -> str:
    """A pipeline component whose one job is the pipeline component `inner` (or a command, `work.yml`)."""
    job = "type: pipeline" if inner != "./work.yml" else "type: command"
    return f"""\
        type: pipeline
        inputs:
          value: {{type: string}}
        outputs:
          out: {{type: uri_folder}}
        jobs:
          inner:
            {job}
            component: {inner}
            inputs:
              value: ${{{{parent.inputs.value}}}}
            outputs:
              out: ${{{{parent.outputs.out}}}}
        """


PIPELINE = """\
    type: pipeline
    inputs:
      greeting: hi
    outputs:
      result: {type: uri_folder}
    jobs:
      outer:
        type: pipeline
        component: ./level1.yml
        inputs:
          value: ${{parent.inputs.greeting}}
        outputs:
          out: ${{parent.outputs.result}}
      after:
        type: command
        command: cat ${{inputs.x}}/v.txt
        inputs:
          x: ${{parent.jobs.outer.outputs.out}}
    """


def test_the_corpus_sample_expands_into_qualified_steps_with_bindings_resolved():
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    assert list(p.jobs) == ["train_and_eval__prep", "train_and_eval__fit__train", "report"]
    assert list(p.groups) == ["train_and_eval", "train_and_eval__fit"]
    prep, train, report = p.jobs.values()
    # ${{parent.inputs.X}} inside a component: what the component job binds to X.
    assert prep.inputs == {"raw": ParentInput("raw_data")}
    # ... through two levels, a sibling's output, and an unbound input's default (repeat: 2).
    assert train.inputs == {
        "data": JobOutput("train_and_eval__prep", "clean"),
        "word": ParentInput("word"),
        "times": 2,
    }
    # An outer job reading the component's output reads the inner step's.
    assert report.inputs == {"scores": JobOutput("train_and_eval__fit__train", "model")}
    assert p.upstream() == {
        "train_and_eval__prep": set(),
        "train_and_eval__fit__train": {"train_and_eval__prep"},
        "report": {"train_and_eval__fit__train"},
    }
    # Code folders are relative to the file that names them.
    assert "code/train_and_eval__fit__train/train.py" in p.files
    assert "code/train_and_eval__prep/prep.py" in p.files
    group = p.groups["train_and_eval__fit"]
    assert group.parent == "train_and_eval" and group.job == "fit" and group.component_name == "fit"
    assert group.job_inputs["train"]["word"] == ParentInput("word")


def test_three_levels_deep_bind_the_pipeline_input_and_reach_the_pipeline_output(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": PIPELINE,
            "level1.yml": _wrapper("./nested/level2.yml"),
            "nested/level2.yml": _wrapper("./level3.yml"),
            "nested/level3.yml": _wrapper("./work.yml"),
            "nested/work.yml": _command(),
        },
    )
    p, _ = load_pipeline(path)
    step = p.jobs["outer__inner__inner__inner"]
    assert step.inputs == {"value": ParentInput("greeting")}
    assert step.outputs == {"out": ParentOutputRef("result")}
    assert p.jobs["after"].inputs == {"x": JobOutput("outer__inner__inner__inner", "out")}
    assert [g.parent for g in p.groups.values()] == ["", "outer", "outer__inner"]


def test_component_files_that_use_each_other_are_an_error(tmp_path):
    path = write(
        tmp_path,
        {"pipeline.yml": PIPELINE, "level1.yml": _wrapper("./level2.yml"), "level2.yml": _wrapper("./level1.yml")},
    )
    problem = one(load_errors(path), "uses itself")
    assert problem.job == "outer__inner__inner" and problem.file.endswith("level2.yml") and problem.line is not None


def test_a_component_that_uses_itself_is_an_error(tmp_path):
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": _wrapper("./level1.yml")})
    one(load_errors(path), "uses itself")


def test_nesting_deeper_than_the_limit_is_an_error(tmp_path):
    files = {"pipeline.yml": PIPELINE, "work.yml": _command()}
    for level in range(1, MAX_DEPTH + 2):
        files[f"level{level}.yml"] = _wrapper(f"./level{level + 1}.yml")
    files[f"level{MAX_DEPTH + 2}.yml"] = _wrapper("./work.yml")
    problem = one(load_errors(write(tmp_path, files)), f"nested more than {MAX_DEPTH} deep")
    assert problem.job.count("__") == MAX_DEPTH


@pytest.mark.parametrize("ref", ["../outside.yml", "/etc/passwd"])
def test_a_component_file_outside_the_pipeline_folder_is_refused(tmp_path, ref):
    (tmp_path / "outside.yml").write_text(_wrapper("./work.yml"))
    folder = tmp_path / "p"
    path = write(folder, {"pipeline.yml": PIPELINE, "level1.yml": _wrapper(ref), "work.yml": _command()})
    problem = one(load_errors(path), "is outside the pipeline folder")
    assert problem.job == "outer__inner" and problem.field == "component"


def test_compute_is_inherited_as_azure_ml_does(tmp_path):
    component = """\
        type: pipeline
        inputs:
          target: {type: string, default: gpu}
        jobs:
          plain:
            type: command
            command: echo plain
          own:
            type: command
            command: echo own
            compute: azureml:own-cluster
          chosen:
            type: command
            command: echo chosen
            compute: ${{parent.inputs.target}}
        """
    path = write(
        tmp_path,
        {
            "pipeline.yml": """\
                type: pipeline
                settings: {default_compute: azureml:cpu-cluster}
                jobs:
                  with_compute:
                    type: pipeline
                    component: ./c.yml
                    compute: azureml:big-cluster
                    inputs:
                      target: azureml:picked
                  with_settings:
                    type: pipeline
                    component: ./c.yml
                    settings: {default_compute: azureml:settings-cluster}
                  without:
                    type: pipeline
                    component: ./c.yml
                """,
            "c.yml": component,
        },
    )
    p, _ = load_pipeline(path)
    compute = {name: step.compute for name, step in p.jobs.items()}
    assert compute == {
        "with_compute__plain": "azureml:big-cluster",
        "with_compute__own": "azureml:own-cluster",
        "with_compute__chosen": "azureml:picked",
        "with_settings__plain": "azureml:settings-cluster",
        "with_settings__own": "azureml:own-cluster",
        "with_settings__chosen": "gpu",
        # Nothing on the way: the pipeline's default_compute applies when it runs.
        "without__plain": "",
        "without__own": "azureml:own-cluster",
        "without__chosen": "gpu",
    }
    assert p.settings.default_compute == "azureml:cpu-cluster"


def test_compute_checks_reach_inner_steps(tmp_path):
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": _wrapper("./work.yml"), "work.yml": _command()})
    p, _ = load_pipeline(path)
    assert p.jobs["outer__inner"].compute == ""
    problems = load_errors(
        write(
            tmp_path,
            {
                "pipeline.yml": PIPELINE.replace(
                    "component: ./level1.yml", "component: ./level1.yml\n        compute: nope"
                )
            },
        ),
        known_computes={"cpu-cluster"},
    )
    assert one(problems, "unknown compute 'nope'").job == "outer__inner"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("value: ${{parent.inputs.value}}", "value: ${{parent.inputs.missing}}"), "has no input 'missing'"),
        (("out: ${{parent.outputs.out}}\n", "out: ${{parent.outputs.other}}\n"), "has no output 'other'"),
    ],
)
def test_wrong_bindings_inside_a_component_name_the_step_and_its_file(tmp_path, change, needle):
    wrapper = _wrapper("./work.yml").replace(*change)
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": wrapper, "work.yml": _command()})
    problem = one(load_errors(path), needle)
    assert problem.job == "outer__inner" and problem.file.endswith("level1.yml")


def test_a_required_component_input_left_unbound_leaves_the_inner_input_unbound(tmp_path):
    wrapper = (
        _wrapper("./work.yml")
        .replace("value: ${{parent.inputs.value}}", "value: ${{parent.inputs.extra}}")
        .replace("  value: {type: string}", "  value: {type: string}\n          extra: {type: string}")
    )
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": wrapper, "work.yml": _command()})
    assert one(load_errors(path), "required input 'value' is not bound").job == "outer__inner"


def test_an_unknown_input_on_the_component_job_is_an_error(tmp_path):
    text = PIPELINE.replace("value: ${{parent.inputs.greeting}}", "valeu: ${{parent.inputs.greeting}}")
    path = write(tmp_path, {"pipeline.yml": text, "level1.yml": _wrapper("./work.yml"), "work.yml": _command()})
    problem = one(load_errors(path), "the component has no input 'valeu'")
    assert problem.job == "outer" and problem.file.endswith("pipeline.yml") and problem.line == 11


def test_a_component_output_that_no_job_binds_is_an_error(tmp_path):
    wrapper = _wrapper("./work.yml").replace("      out: ${{parent.outputs.out}}\n", "")
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": wrapper, "work.yml": _command()})
    one(load_errors(path), "output 'out' is bound by none of the component's jobs")


def test_expanded_names_that_collide_are_an_error(tmp_path):
    text = PIPELINE.rstrip(" ") + "      outer__inner:\n        type: command\n        command: echo twin\n"
    path = write(tmp_path, {"pipeline.yml": text, "level1.yml": _wrapper("./work.yml"), "work.yml": _command()})
    one(load_errors(path), "two jobs are named 'outer__inner'")


def test_a_pipeline_component_under_a_command_job_says_which_type_to_use(tmp_path):
    text = PIPELINE.replace("type: pipeline\n        component", "type: command\n        component")
    path = write(tmp_path, {"pipeline.yml": text, "level1.yml": _wrapper("./work.yml"), "work.yml": _command()})
    one(load_errors(path), "a pipeline component is used by a job with 'type: pipeline'")


def test_import_export_import_gives_the_same_pipeline(tmp_path):
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    assert from_json(to_json(p), p.files) == p
    dump_folder(p, tmp_path / "export")
    again, _ = load_pipeline(tmp_path / "export" / "pipeline.yml")
    assert again == p
    assert yaml_files(again) == yaml_files(p)
    exported = (tmp_path / "export" / "components" / "train_and_eval.yml").read_text()
    assert "type: pipeline" in exported and "${{parent.jobs.prep.outputs.clean}}" in exported
    top = (tmp_path / "export" / "pipeline.yml").read_text()
    assert "${{parent.jobs.train_and_eval.outputs.scores}}" in top


def test_an_inner_step_changed_outside_its_component_is_a_validation_error():
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    assert not [x for x in validate_pipeline(p) if x.severity == "error"]
    p.jobs["train_and_eval__fit__train"].inputs["times"] = 5
    problem = one(validate_pipeline(p), "belongs to pipeline component 'fit'")
    assert problem.job == "train_and_eval__fit__train"


def test_an_outer_step_reading_an_unexposed_inner_output_cannot_be_exported():
    p, _ = load_pipeline(CORPUS / "pipeline.yml")
    p.jobs["report"].inputs["scores"] = JobOutput("train_and_eval__prep", "clean")
    with pytest.raises(ValueError, match="does not expose it as an output"):
        yaml_files(p)


def test_a_literal_of_the_wrong_type_for_a_component_input_is_an_error(tmp_path):
    text = PIPELINE.replace("value: ${{parent.inputs.greeting}}", "value: 3")
    wrapper = _wrapper("./work.yml").replace("  value: {type: string}", "  value: {type: boolean}")
    path = write(tmp_path, {"pipeline.yml": text, "level1.yml": wrapper, "work.yml": _command()})
    problem = one(load_errors(path), "boolean")
    assert problem.job == "outer" and problem.field == "inputs.value" and problem.file.endswith("pipeline.yml")


def test_a_pipeline_that_uses_its_own_file_as_a_component_is_an_error(tmp_path):
    path = write(tmp_path, {"pipeline.yml": PIPELINE.replace("./level1.yml", "./pipeline.yml")})
    problem = one(load_errors(path), "uses itself: pipeline.yml -> pipeline.yml")
    assert problem.job == "outer"


def test_a_component_output_bound_by_two_jobs_is_an_error(tmp_path):
    wrapper = _wrapper("./work.yml").rstrip(" ") + (
        "          twin:\n"
        "            type: command\n"
        "            component: ./work.yml\n"
        "            inputs:\n"
        "              value: x\n"
        "            outputs:\n"
        "              out: ${{parent.outputs.out}}\n"
    )
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": wrapper, "work.yml": _command()})
    problem = one(
        load_errors(path), "output 'out' of pipeline component 'outer' is already bound by job 'outer__inner'"
    )
    assert problem.job == "outer__twin" and problem.file.endswith("level1.yml")


def test_a_data_transfer_job_inside_a_component_is_refused_with_one_error(tmp_path):
    # Parallel jobs nest (tests/unit/spec/test_parallel_nested.py); data transfers not yet.
    wrapper = _wrapper("./work.yml").replace("type: command", "type: data_transfer")
    path = write(tmp_path, {"pipeline.yml": PIPELINE, "level1.yml": wrapper, "work.yml": _command()})
    problem = one(load_errors(path), "a data_transfer job inside a pipeline component is not supported yet")
    assert problem.job == "outer__inner"
