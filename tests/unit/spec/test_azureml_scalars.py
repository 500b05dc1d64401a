"""Scalars given to typed inputs are read as Azure ML reads them (its SDK's `Input._parse`)."""

from __future__ import annotations

import textwrap

import pytest

from stepwise.spec import SpecError, load_component, load_pipeline, parse_text
from stepwise.spec.bindings import azureml_scalar

from .helpers import errors_of, one, write


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        # A string input gets Python's text of the value, as the SDK sends every literal.
        ("string", True, "True"),
        ("string", False, "False"),
        ("string", 224, "224"),
        ("string", 0.5, "0.5"),
        ("string", "adam", "adam"),
        # A boolean input takes true/false written in any case, nothing else.
        ("boolean", "False", False),
        ("boolean", "false", False),
        ("boolean", "True", True),
        ("boolean", "TRUE", True),
        ("boolean", True, True),
        ("integer", "3", 3),
        ("integer", "-12", -12),
        ("integer", "3.0", 3),
        ("integer", 4.0, 4),
        ("integer", 7, 7),
        ("number", "0.5", 0.5),
        ("number", "3", 3),
        ("number", "1e-3", 0.001),
        ("number", 2, 2),
    ],
)
def test_a_scalar_is_read_as_the_input_type(type_, value, expected):
    result = azureml_scalar(type_, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("boolean", "yes"),
        ("boolean", "1"),
        ("boolean", 1),
        ("integer", "ten"),
        ("integer", "2.5"),  # the SDK truncates it to 2; Stepwise keeps it an error
        ("integer", 2.5),
        ("integer", True),
        ("integer", ""),
        ("number", "fast"),
        ("number", "nan"),
        ("number", "inf"),
        ("number", False),
    ],
)
def test_a_scalar_that_cannot_be_read_is_left_as_written(type_, value):
    assert azureml_scalar(type_, value) is value


COMPONENT = """\
    $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
    type: command
    name: train
    inputs:
      optimizer: {type: string}
      image_size: {type: string}
      shuffle: {type: boolean, default: "false"}
      epochs: {type: integer}
      rate: {type: number}
    command: echo ${{inputs.optimizer}} ${{inputs.image_size}} ${{inputs.shuffle}} ${{inputs.epochs}} ${{inputs.rate}}
"""


def _pipeline(inputs: str) -> str:
    return textwrap.dedent("""\
        type: pipeline
        jobs:
          train:
            component: ./train.yml
            inputs:
        """) + textwrap.indent(textwrap.dedent(inputs), " " * 6)


def test_component_inputs_get_azure_ml_values(tmp_path):
    inputs = """\
        optimizer: true
        image_size: 224
        shuffle: "True"
        epochs: "3"
        rate: "0.5"
        """
    path = write(tmp_path, {"train.yml": COMPONENT, "pipeline.yml": _pipeline(inputs)})
    p, _ = load_pipeline(path)
    assert p.jobs["train"].inputs == {
        "optimizer": "True",
        "image_size": "224",
        "shuffle": True,
        "epochs": 3,
        "rate": 0.5,
    }
    assert p.jobs["train"].input_decls["shuffle"].default is False


def test_a_value_that_cannot_be_read_names_job_input_and_value(tmp_path):
    inputs = """\
        optimizer: adam
        image_size: 224
        epochs: ten
        rate: "0.5"
        shuffle: "maybe"
        """
    path = write(tmp_path, {"train.yml": COMPONENT, "pipeline.yml": _pipeline(inputs)})
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    errors = [p for p in info.value.problems if p.severity == "error"]
    epochs = one(errors, "'ten'")
    assert (epochs.job, epochs.field) == ("train", "inputs.epochs")
    assert "integer" in epochs.message
    assert "job 'train'" in str(epochs) and "inputs.epochs" in str(epochs)
    shuffle = one(errors, "'maybe'")
    assert (shuffle.job, shuffle.field) == ("train", "inputs.shuffle")
    assert len(errors) == 2


def test_inline_job_values_with_a_declared_type():
    p, _ = parse_text(
        textwrap.dedent("""\
            type: pipeline
            inputs:
              size: {type: string, default: 224}
              debug: {type: boolean, default: "False"}
              steps: {type: integer, default: "10"}
            jobs:
              a:
                command: echo ${{inputs.tag}} ${{inputs.size}} ${{inputs.debug}}
                inputs:
                  tag: {type: string, value: true}
                  size: ${{parent.inputs.size}}
                  debug: ${{parent.inputs.debug}}
            """)
    )
    assert p.inputs["size"].default == "224"
    assert p.inputs["debug"].default is False
    assert p.inputs["steps"].default == 10
    assert p.jobs["a"].inputs["tag"] == "True"


def test_a_pipeline_input_default_that_cannot_be_read_is_an_error():
    errors = errors_of("""\
        type: pipeline
        inputs:
          steps: {type: integer, default: many}
        jobs:
          a:
            command: echo ${{inputs.n}}
            inputs:
              n: ${{parent.inputs.steps}}
        """)
    problem = one(errors, "'many'")
    assert problem.field == "inputs.steps.default"


def test_a_registered_component_s_defaults_are_read_too(tmp_path):
    write(tmp_path, {"train.yml": COMPONENT})
    step, _files, _warnings = load_component(tmp_path / "train.yml")
    assert step.input_decls["shuffle"].default is False


PIPELINE_INPUTS = """\
    type: pipeline
    inputs:
      epochs: "10"
      shuffle: "false"
      name: "7"
      both: "3"
      words: many
    jobs:
      train:
        component: ./train.yml
        inputs:
          epochs: ${{parent.inputs.epochs}}
          shuffle: ${{parent.inputs.shuffle}}
          optimizer: ${{parent.inputs.name}}
          image_size: ${{parent.inputs.both}}
          rate: ${{parent.inputs.words}}
      echo:
        command: echo ${{inputs.n}}
        inputs:
          n: ${{parent.inputs.both}}
    """


def test_bare_text_pipeline_inputs_take_the_type_they_feed(tmp_path):
    text = PIPELINE_INPUTS.replace("rate: ${{parent.inputs.words}}", "rate: 0.1")
    p, _ = load_pipeline(write(tmp_path, {"train.yml": COMPONENT, "pipeline.yml": text}))
    assert (p.inputs["epochs"].type, p.inputs["epochs"].default) == ("integer", 10)
    assert (p.inputs["shuffle"].type, p.inputs["shuffle"].default) == ("boolean", False)
    # Feeding only string inputs, text stays text.
    assert (p.inputs["name"].type, p.inputs["name"].default) == ("string", "7")
    assert (p.inputs["both"].type, p.inputs["both"].default) == ("string", "3")


def test_bare_text_that_does_not_read_as_the_fed_type_stays_an_error(tmp_path):
    path = write(tmp_path, {"train.yml": COMPONENT, "pipeline.yml": PIPELINE_INPUTS})
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    errors = [p for p in info.value.problems if p.severity == "error"]
    problem = one(errors, "'words'")
    assert (problem.job, problem.field) == ("train", "inputs.rate")
    assert "string but the input is number" in problem.message


def test_a_typed_pipeline_input_is_not_retyped(tmp_path):
    text = PIPELINE_INPUTS.replace('epochs: "10"', "epochs: {type: string, default: '10'}")
    path = write(tmp_path, {"train.yml": COMPONENT, "pipeline.yml": text})
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert one(info.value.problems, "'epochs' is string but the input is integer").field == "inputs.epochs"
