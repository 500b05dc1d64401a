"""`type: secret` inputs: declared in the YAML without a value, passed by environment variable."""

from __future__ import annotations

import subprocess

import pytest

from stepwise.spec import (
    EnvRef,
    InputDecl,
    ParentInput,
    Pipeline,
    Step,
    export_files,
    from_json,
    parse_text,
    render_command,
    secret_env_var,
    to_json,
    validate_pipeline,
)

from .helpers import errors_of, load_errors, one, write

SECRET_PIPELINE = """
type: pipeline
inputs:
  api_token: {type: secret, description: The service's token}
  extra: {type: secret, optional: true}
jobs:
  call:
    type: command
    command: curl -H ${{inputs.token}} $[[--extra ${{inputs.extra}}]] https://example.com
    inputs:
      token: ${{parent.inputs.api_token}}
      extra: ${{parent.inputs.extra}}
"""


def test_a_secret_pipeline_input_parses_and_binds_to_an_inline_job():
    p, _warnings = parse_text(SECRET_PIPELINE)
    assert p.inputs["api_token"] == InputDecl(type="secret", description="The service's token")
    assert p.inputs["extra"].optional
    call = p.jobs["call"]
    assert call.inputs["token"] == ParentInput("api_token")
    assert call.input_decls["token"].type == "secret"
    assert call.input_decls["extra"] == InputDecl(type="secret", optional=True)


def test_a_secret_round_trips_through_json_and_the_export(tmp_path):
    p, _ = parse_text(SECRET_PIPELINE)
    assert from_json(to_json(p)) == p
    files, _empty = export_files(p)
    assert b"type: secret" in files["pipeline.yml"]
    assert b"type: secret" in files["components/call.yml"]
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    again, _ = parse_text((tmp_path / "pipeline.yml").read_text(), base_dir=tmp_path)
    assert again == p


@pytest.mark.parametrize("key", ["default", "value"])
def test_a_secret_pipeline_input_with_a_value_in_the_yaml_is_refused_without_echoing_it(key):
    problems = errors_of(
        f"""
        type: pipeline
        inputs:
          token: {{type: secret, {key}: hunter2-value}}
        jobs:
          a: {{type: command, command: echo}}
        """
    )
    problem = one(problems, "secret input takes no default")
    assert problem.field == "inputs.token.default"
    assert problem.file == "pipeline.yml" and problem.line == 4
    assert "hunter2" not in str(problem)
    assert "pipeline.yml:4: field 'inputs.token.default'" in str(problem)


def test_a_secret_component_input_with_a_default_names_the_component_file(tmp_path):
    path = write(
        tmp_path,
        {
            "pipeline.yml": """
                type: pipeline
                inputs:
                  token: {type: secret}
                jobs:
                  call:
                    type: command
                    component: ./call.yml
                    inputs:
                      token: ${{parent.inputs.token}}
                """,
            "call.yml": """
                type: command
                name: call
                inputs:
                  token:
                    type: secret
                    default: hunter2-value
                command: echo ${{inputs.token}}
                """,
        },
    )
    problems = load_errors(path)
    problem = one(problems, "secret input takes no default")
    assert (problem.job, problem.field) == ("call", "inputs.token.default")
    assert problem.file.endswith("call.yml") and problem.line == 7
    assert all("hunter2" not in str(p) for p in problems)


@pytest.mark.parametrize(
    "binding",
    ["hunter2-value", "{type: secret, value: hunter2-value}"],
)
def test_a_secret_job_input_given_a_literal_is_refused_without_echoing_it(binding):
    problems = errors_of(
        f"""
        type: pipeline
        inputs:
          token: {{type: secret}}
        jobs:
          call:
            type: command
            component:
              type: command
              inputs:
                token: {{type: secret}}
              command: echo ${{{{inputs.token}}}}
            inputs:
              token: {binding}
        """
    )
    problem = one(problems, "a secret cannot be written in the pipeline")
    assert (problem.job, problem.field) == ("call", "inputs.token")
    assert all("hunter2" not in str(p) for p in problems)


@pytest.mark.parametrize(("source", "target"), [("secret", "string"), ("string", "secret"), ("secret", "uri_folder")])
def test_secrets_bind_only_to_secrets(source, target):
    p = Pipeline(
        name="p",
        inputs={"x": InputDecl(type=source)},
        jobs={
            "a": Step(
                name="a",
                command="echo ${{inputs.y}}",
                input_decls={"y": InputDecl(type=target)},
                inputs={"y": ParentInput("x")},
            )
        },
    )
    problems = [x for x in validate_pipeline(p) if x.severity == "error"]
    assert [(x.job, x.field) for x in problems] == [("a", "inputs.y")]
    assert f"is {source} but the input is {target}" in problems[0].message


def test_an_unbound_required_secret_is_an_error():
    problems = errors_of(
        """
        type: pipeline
        jobs:
          call:
            type: command
            component:
              type: command
              inputs:
                token: {type: secret}
              command: echo ${{inputs.token}}
        """
    )
    assert one(problems, "required input 'token' is not bound").field == "inputs.token"


def test_two_secrets_of_a_step_that_share_an_environment_variable_are_an_error():
    problems = errors_of(
        """
        type: pipeline
        inputs:
          a: {type: secret}
        jobs:
          call:
            type: command
            component:
              type: command
              inputs:
                token: {type: secret}
                TOKEN: {type: secret}
              command: echo ${{inputs.token}} ${{inputs.TOKEN}}
            inputs:
              token: ${{parent.inputs.a}}
              TOKEN: ${{parent.inputs.a}}
        """
    )
    problem = one(problems, "would both be passed as $STEPWISE_SECRET_TOKEN")
    assert (problem.job, problem.field) == ("call", "inputs.TOKEN.type")


def test_secret_env_var_is_prefixed_so_it_cannot_replace_path():
    assert secret_env_var("path") == "STEPWISE_SECRET_PATH"
    assert secret_env_var("api_Token") == "STEPWISE_SECRET_API_TOKEN"


def test_a_secret_renders_as_a_quoted_environment_reference_never_a_value():
    rendered = render_command(
        "login --token ${{inputs.token}} --user ${{inputs.user}}",
        inputs={"token": EnvRef("STEPWISE_SECRET_TOKEN"), "user": "ann"},
        outputs={},
    )
    assert rendered == 'login --token "${STEPWISE_SECRET_TOKEN}" --user ann'


def test_an_unset_optional_secret_drops_its_segment_and_a_set_one_keeps_it():
    command = "run $[[--extra ${{inputs.extra}}]]"
    assert render_command(command, inputs={"extra": None}, outputs={}) == "run "
    rendered = render_command(command, inputs={"extra": EnvRef("STEPWISE_SECRET_EXTRA")}, outputs={})
    assert rendered == 'run --extra "${STEPWISE_SECRET_EXTRA}"'


def test_the_shell_passes_the_secret_as_one_argument_without_interpreting_it(tmp_path):
    value = "a b;$(touch pwned)`id`'\"*\n2nd line"
    rendered = render_command(
        "printf '%s|' ${{inputs.token}}", inputs={"token": EnvRef("STEPWISE_SECRET_TOKEN")}, outputs={}
    )
    result = subprocess.run(
        ["bash", "-c", rendered],
        cwd=tmp_path,
        env={"STEPWISE_SECRET_TOKEN": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == value + "|"
    assert not (tmp_path / "pwned").exists()
