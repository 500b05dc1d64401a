"""Job types that only Azure ML runs are refused once; a refused job is reported at its root only."""

from __future__ import annotations

import pytest

from stepwise.spec import SpecError, load_pipeline

from .helpers import errors_of, write

AUTOML = """\
    type: pipeline
    inputs:
      training: {type: uri_folder, optional: true}
    jobs:
      train:
        type: automl
        task: classification
        primary_metric: accuracy
        target_column_name: y
        training_data: ${{parent.inputs.training}}
        limits: {timeout_minutes: 60}
        outputs:
          best_model: {type: mlflow_model}
      score:
        type: command
        command: echo ${{inputs.model}}
        inputs:
          model: ${{parent.jobs.train.outputs.best_model}}
      report:
        type: command
        command: echo ${{inputs.model}}
        inputs:
          model: ${{parent.jobs.train.outputs.best_model}}
    """


@pytest.mark.parametrize("job_type", ["automl", "spark"])
def test_azure_only_job_types_get_one_clear_error(job_type):
    errors = errors_of(AUTOML.replace("type: automl", f"type: {job_type}"))
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        f"job 'train': field 'type': type {job_type} runs only on Azure ML; Stepwise cannot run it"
    ]


def test_a_component_of_an_azure_only_type_is_refused_the_same_way(tmp_path):
    path = write(
        tmp_path,
        {
            "spark.yml": "type: spark\nname: wrangle\nentry: {file: ./wrangle.py}\n",
            "pipeline.yml": """\
                type: pipeline
                jobs:
                  wrangle:
                    component: ./spark.yml
                  use:
                    command: echo ${{inputs.x}}
                    inputs:
                      x: ${{parent.jobs.wrangle.outputs.out}}
                """,
        },
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    errors = [p for p in info.value.problems if p.severity == "error"]
    assert len(errors) == 1
    assert errors[0].message == "component type spark runs only on Azure ML; Stepwise cannot run it"
    assert errors[0].job == "wrangle"


def test_a_job_with_errors_of_its_own_adds_none_through_its_bindings():
    errors = errors_of("""\
        type: pipeline
        jobs:
          prep:
            command: python prep.py ${{inputs.missing}}
          train:
            command: echo ${{inputs.data}}
            inputs:
              data: ${{parent.jobs.prep.outputs.data}}
        """)
    assert [(e.job, e.field) for e in errors] == [("prep", "command")]


def test_bindings_to_healthy_jobs_are_still_checked():
    errors = errors_of("""\
        type: pipeline
        jobs:
          prep:
            command: echo ${{outputs.data}}
            outputs:
              data: {type: uri_folder}
          train:
            command: echo ${{inputs.data}}
            inputs:
              data: ${{parent.jobs.prep.outputs.dta}}
          other:
            command: echo ${{inputs.x}}
            inputs:
              x: ${{parent.jobs.ghost.outputs.y}}
        """)
    messages = sorted(e.message for e in errors)
    assert messages == [
        "bound to an output of job 'ghost', which does not exist",
        "job 'prep' has no output 'dta'",
    ]


@pytest.mark.parametrize("job_type", ["import", "flow"])
def test_job_types_not_supported_yet_keep_their_message(job_type):
    errors = errors_of(AUTOML.replace("type: automl", f"type: {job_type}"))
    expected = (
        f"job type '{job_type}' is not supported yet (only command, sweep, parallel, data_transfer and pipeline jobs)"
    )
    assert [e.message for e in errors] == [expected]


def test_jobs_that_are_not_a_mapping_are_one_error():
    errors = errors_of("type: pipeline\njobs: [a, b]\n")
    assert [e.message for e in errors if "mapping" in e.message] == ["jobs must be a mapping"]
