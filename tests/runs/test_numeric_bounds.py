"""Numbers from the run form, `--set` and the query string are bounded: a clear error, never a 500."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from runs.models import Run, StepRun
from runs.services import RunInputError, run_create
from stepwise.spec.bindings import INTEGER_MAX, MAX_TIMEOUT_S

from .conftest import make_pipeline

HUGE = "99999999999999999999999"


def post_run(client, pipeline, **data: str):
    return client.post(reverse("run_create", args=[pipeline.pk]), {"in_mode": "fast", **data})


@pytest.mark.parametrize("timeout", [HUGE, str(MAX_TIMEOUT_S + 1), "0", "-5"])
def test_run_form_timeout_out_of_range_is_an_inline_error(pipeline, client, alice, timeout):
    client.force_login(alice)
    response = post_run(client, pipeline, timeout_s=timeout)
    assert response.status_code == 200
    assert response.context["form"].errors["timeout_s"]
    assert Run.objects.count() == 0


def test_run_form_timeout_says_what_the_limit_is(pipeline, client, alice):
    client.force_login(alice)
    response = post_run(client, pipeline, timeout_s=HUGE)
    assert f"at most {MAX_TIMEOUT_S} seconds" in response.content.decode()


def test_run_form_takes_the_longest_timeout(pipeline, client, alice):
    client.force_login(alice)
    assert post_run(client, pipeline, timeout_s=str(MAX_TIMEOUT_S)).status_code == 302
    assert Run.objects.get().timeout_s == MAX_TIMEOUT_S


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("in_epochs", str(10**30), f"expected an integer from {-(2**63)} to {INTEGER_MAX}"),
        ("in_epochs", str(-(2**63) - 1), "expected an integer from"),
        ("in_rate", "1e400", "expected a finite number"),
        ("in_rate", "nan", "expected a finite number"),
        ("in_rate", "-inf", "expected a finite number"),
    ],
)
def test_run_form_numbers_no_database_holds_are_inline_errors(pipeline, client, alice, field, value, message):
    client.force_login(alice)
    response = post_run(client, pipeline, **{field: value})
    assert response.status_code == 200
    assert message in response.context["form"].errors[field][0]
    assert Run.objects.count() == 0


def test_the_largest_integer_is_stored_and_read_back_exactly(pipeline, client, alice):
    client.force_login(alice)
    assert post_run(client, pipeline, in_epochs=str(INTEGER_MAX)).status_code == 302
    run = Run.objects.get()
    run.refresh_from_db()
    assert run.inputs["epochs"] == INTEGER_MAX


def test_the_run_form_tells_the_browser_the_integer_range(pipeline, client, alice):
    client.force_login(alice)
    html = client.get(reverse("run_create", args=[pipeline.pk])).content.decode()
    assert f'max="{INTEGER_MAX}"' in html


@pytest.mark.parametrize(
    ("name", "value", "message"), [("epochs", str(10**30), "expected an integer from"), ("rate", "1e999", "finite")]
)
def test_cli_set_out_of_range_exits_2_with_the_reason(pipeline, alice, capsys, name, value, message):
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "run", pipeline.name, "--user", "alice", "--set", f"{name}={value}")
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert Run.objects.count() == 0


@pytest.mark.parametrize("param", ["pipeline", "after_seq"])
def test_query_string_numbers_beyond_a_database_integer_are_ignored(run, client, alice, param):
    client.force_login(alice)
    url = reverse("run_list") if param == "pipeline" else reverse("step_log", args=[run.pk, "prep"])
    assert client.get(url, {param: str(10**30)}).status_code == 200


# Azure ML's min/max: the pipeline input's own, and those of the component input it feeds.
BOUNDED_YAML = """
type: pipeline
inputs:
  epochs: {type: integer, default: 3, min: 1, max: 10}
  rate: 0.5
jobs:
  train:
    type: command
    inputs:
      epochs: ${{parent.inputs.epochs}}
      rate: ${{parent.inputs.rate}}
    component:
      command: echo ${{inputs.epochs}} ${{inputs.rate}}
      inputs:
        epochs: {type: integer}
        rate: {type: number, min: 0, max: 1}
"""


@pytest.fixture
def bounded(alice, team):
    return make_pipeline(team, alice, name="bounded", yaml_text=BOUNDED_YAML)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("in_epochs", "0", "0 is below the minimum 1"),
        ("in_epochs", "11", "11 is above the maximum 10"),
        ("in_rate", "1.5", "1.5 is above the maximum 1 of job 'train' input 'rate'"),
    ],
)
def test_run_form_value_outside_min_max_is_an_inline_error(bounded, client, alice, field, value, message):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[bounded.pk]), {field: value})
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert Run.objects.count() == 0


def test_the_run_form_tells_the_browser_the_declared_range(bounded, client, alice):
    client.force_login(alice)
    html = client.get(reverse("run_create", args=[bounded.pk])).content.decode()
    assert 'min="1"' in html and 'max="10"' in html and "1 ≤ value ≤ 10" in html


def test_run_create_refuses_a_value_outside_the_range_and_saves_nothing(bounded, alice):
    with pytest.raises(RunInputError) as info:
        run_create(version=bounded.latest_version, user=alice, inputs={"epochs": 0})
    assert info.value.errors == {"epochs": "0 is below the minimum 1"}
    assert Run.objects.count() == 0 and StepRun.objects.count() == 0
    # The bounds themselves are inside the range.
    run = run_create(version=bounded.latest_version, user=alice, inputs={"epochs": 10, "rate": "0"})
    run.refresh_from_db()
    assert run.inputs == {"epochs": 10, "rate": 0.0}


def test_cli_set_outside_min_max_exits_2_naming_the_input_and_range(bounded, alice, capsys):
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "run", bounded.name, "--user", "alice", "--set", "epochs=11")
    assert info.value.code == 2
    assert "input epochs: 11 is above the maximum 10" in capsys.readouterr().err
    assert Run.objects.count() == 0
