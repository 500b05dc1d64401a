"""`compute:` names: targets and aliases, `serverless`, a pipeline input, unknown names."""

from __future__ import annotations

import textwrap

import pytest

from stepwise.spec import parse_text
from stepwise.spec.bindings import compute_input, compute_target_name

from .helpers import errors_of, one

KNOWN = {"local", "cpu-cluster", "gpu"}


def _yaml(compute: str, inputs: str = "") -> str:
    """One job running on `compute`; `inputs` is the pipeline's inputs block (YAML lines)."""
    return f"type: pipeline\n{inputs}\njobs:\n  a:\n    command: echo hi\n    compute: {compute}\n"


@pytest.mark.parametrize("compute", ["azureml:cpu-cluster", "cpu-cluster", "gpu", "serverless", "azureml:serverless"])
def test_names_aliases_and_serverless_are_known(compute):
    p, warnings = parse_text(_yaml(compute), known_computes=KNOWN)
    assert p.jobs["a"].compute == compute
    assert not [w for w in warnings if "compute" in w.message]


def test_serverless_asks_for_the_default_target():
    assert compute_target_name("serverless") == ""
    assert compute_target_name("azureml:gpu") == "gpu"
    assert compute_target_name("") == ""


def test_an_unknown_name_is_an_error_by_default():
    problem = one(errors_of(_yaml("azureml:gpu-cluster"), known_computes=KNOWN), "unknown compute 'gpu-cluster'")
    assert (problem.job, problem.field) == ("a", "compute")
    assert "local" in problem.message and "serverless" in problem.message


def test_an_unknown_name_can_run_on_the_default_target_with_a_warning():
    p, warnings = parse_text(_yaml("azureml:gpu-cluster"), known_computes=KNOWN, unknown_compute_to_default=True)
    warning = one(warnings, "unknown compute 'gpu-cluster'")
    assert warning.severity == "warning" and warning.job == "a"
    assert "default compute target" in warning.message
    assert p.jobs["a"].compute == "azureml:gpu-cluster"


def test_a_pipeline_input_names_the_compute():
    inputs = "inputs:\n  target: {type: string, default: azureml:gpu}"
    p, _ = parse_text(_yaml("${{parent.inputs.target}}", inputs), known_computes=KNOWN)
    assert compute_input(p.jobs["a"].compute) == "target"


def test_a_pipeline_input_s_default_must_be_a_known_name():
    inputs = "inputs:\n  target: {type: string, default: tpu-pod}"
    problem = one(errors_of(_yaml("${{parent.inputs.target}}", inputs), known_computes=KNOWN), "tpu-pod")
    assert (problem.job, problem.field) == ("a", "compute")


def test_a_compute_input_must_be_declared_and_a_string():
    missing = one(errors_of(_yaml("${{parent.inputs.nope}}"), known_computes=KNOWN), "'nope'")
    assert "not declared" in missing.message
    inputs = "inputs:\n  target: 3"
    typed = one(errors_of(_yaml("${{parent.inputs.target}}", inputs), known_computes=KNOWN), "'target'")
    assert "integer, not string" in typed.message


def test_another_compute_expression_is_an_error():
    problem = one(errors_of(_yaml('"x-${{parent.inputs.target}}"')), "unsupported compute expression")
    assert problem.field == "compute"


def test_settings_default_compute_follows_the_same_rules():
    text = textwrap.dedent("""\
        type: pipeline
        settings:
          default_compute: serverless
        jobs:
          a: {command: echo hi}
        """)
    p, _ = parse_text(text, known_computes=KNOWN)
    assert p.settings.default_compute == "serverless"
    bad = text.replace("serverless", "azureml:nowhere")
    assert one(errors_of(bad, known_computes=KNOWN), "nowhere").field == "settings.default_compute"
