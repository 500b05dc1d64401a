"""A command component file read on its own (registration), and resolvers that say why a reference fails."""

from __future__ import annotations

import pytest

from stepwise.spec import ComponentLookupError, SpecError, component_mapping, load_component, parse_text

from .helpers import write

TRAIN = """\
    $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
    type: command
    name: train
    version: 2
    inputs:
      lr: {type: number, default: 0.1}
      data: {type: uri_folder}
    outputs:
      model: {type: uri_folder}
    code: ../src
    environment: azureml:sklearn:1
    command: python train.py --lr ${{inputs.lr}} --data ${{inputs.data}} --model ${{outputs.model}}
"""


def test_a_component_file_loads_with_its_code(tmp_path):
    write(tmp_path, {"components/train.yml": TRAIN, "src/train.py": "print(1)\n"})
    step, files, warnings = load_component(tmp_path / "components" / "train.yml", root=tmp_path)
    assert (step.component_name, step.component_version) == ("train", "2")
    assert files == {"train.py": b"print(1)\n"}
    assert [w.field for w in warnings] == ["$schema"]
    body = component_mapping(step)
    assert body["inputs"] == {"lr": {"type": "number", "default": 0.1}, "data": {"type": "uri_folder"}}
    assert "code" not in body and "$schema" not in body and body["environment"] == "azureml:sklearn:1"


def test_a_component_without_name_or_version_leaves_them_empty(tmp_path):
    write(tmp_path, {"c.yml": "type: command\ncommand: echo hi\n"})
    step, files, _ = load_component(tmp_path / "c.yml")
    assert (step.component_name, step.component_version, files) == ("", "", {})


def test_code_outside_the_root_is_refused(tmp_path):
    write(tmp_path, {"components/train.yml": TRAIN, "src/train.py": "print(1)\n"})
    with pytest.raises(SpecError) as caught:
        load_component(tmp_path / "components" / "train.yml")
    assert any(p.field == "code" for p in caught.value.problems)


def test_problems_name_the_field_and_line(tmp_path):
    write(
        tmp_path,
        {"bad.yml": "type: command\ninputs:\n  lr: {type: nmber}\ncommand: python t.py ${{inputs.x}}\n"},
    )
    with pytest.raises(SpecError) as caught:
        load_component(tmp_path / "bad.yml")
    found = {(p.field, p.line) for p in caught.value.problems if p.severity == "error"}
    assert found == {("inputs.lr.type", 3), ("command", 4)}
    assert all(p.file.endswith("bad.yml") and p.job == "" for p in caught.value.problems)


def test_a_pipeline_is_not_a_component(tmp_path):
    write(tmp_path, {"p.yml": "type: pipeline\njobs: {}\n"})
    with pytest.raises(SpecError) as caught:
        load_component(tmp_path / "p.yml")
    assert any(p.field == "type" for p in caught.value.problems)


def test_a_resolver_says_why_a_reference_fails():
    def resolve(name, version):
        raise ComponentLookupError(f"component '{name}' has no version '{version}' (versions: 1, 2)")

    with pytest.raises(SpecError) as caught:
        parse_text('type: pipeline\njobs:\n  a: {component: "azureml:train:3"}\n', resolve_component=resolve)
    (problem,) = [p for p in caught.value.problems if p.field == "component"]
    assert problem.message == "component 'train' has no version '3' (versions: 1, 2)"
    assert (problem.job, problem.field) == ("a", "component")
