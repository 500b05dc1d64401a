"""Forcing some steps of a run (design.md, Reuse: "Force rerun per run or per step"): the service,
the run form and `pipelines run --force-step` start a run with StepRun.force set for the named
steps only, and refuse a name the pipeline has no step of before anything is written."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from pipelines_ui.models import Pipeline
from runs.models import Run, StepRun
from runs.services import RunInputError, run_create

from .conftest import PIPELINE_YAML


def forced(run: Run) -> set[str]:
    return set(run.steps.filter(force=True).values_list("name", flat=True))


# ---- the service ---------------------------------------------------------------------------


def test_run_create_forces_only_the_named_steps(pipeline, alice):
    run = run_create(version=pipeline.latest_version, user=alice, force_steps={"train"})
    assert forced(run) == {"train"}
    assert run.force_rerun is False


def test_run_create_refuses_unknown_step_names_and_writes_nothing(pipeline, alice):
    with pytest.raises(RunInputError) as info:
        run_create(version=pipeline.latest_version, user=alice, force_steps={"train", "tran", "zzz"})
    # Every unknown name, under the option's name; the known one is not mentioned.
    assert info.value.errors == {"force_steps": "no steps named 'tran', 'zzz'"}
    with pytest.raises(RunInputError) as info:
        run_create(version=pipeline.latest_version, user=alice, force_steps=["nope"])
    assert info.value.errors == {"force_steps": "no step named 'nope'"}
    assert Run.objects.count() == 0 and StepRun.objects.count() == 0


# ---- the run form --------------------------------------------------------------------------


def test_run_form_lists_the_steps_to_force_after_force_rerun(pipeline, client, alice):
    client.force_login(alice)
    html = client.get(reverse("run_create", args=[pipeline.pk])).content.decode()
    assert "Force these steps" in html
    boxes = re.findall(r'<input [^>]*name="force_steps"[^>]*>', html)
    assert [re.search(r'value="([^"]*)"', box)[1] for box in boxes] == ["prep", "train", "report"]
    assert all('type="checkbox"' in box for box in boxes)
    assert html.index('name="force_rerun"') < html.index('name="force_steps"') < html.index('name="timeout_s"')


def test_run_form_starts_a_run_forcing_the_chosen_steps_only(
    pipeline, client, alice, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    response = client.post(
        reverse("run_create", args=[pipeline.pk]), {"in_mode": "fast", "force_steps": ["prep", "report"]}
    )
    run = Run.objects.get()
    assert response.status_code == 302
    assert forced(run) == {"prep", "report"}
    assert run.force_rerun is False


def test_run_form_unknown_step_is_an_inline_error_and_creates_nothing(pipeline, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[pipeline.pk]), {"in_mode": "fast", "force_steps": ["nope"]})
    assert response.status_code == 200
    assert response.context["form"].errors["force_steps"] == ["no step named 'nope'"]
    assert "no step named &#x27;nope&#x27;" in response.content.decode()
    assert Run.objects.count() == 0


def test_service_errors_about_forced_steps_land_on_the_field(pipeline, alice):
    from runs.forms import RunForm
    from runs.specs import version_spec

    form = RunForm({"in_mode": "fast"}, spec=version_spec(pipeline.latest_version))
    assert form.is_valid()
    form.add_input_errors(RunInputError({"force_steps": "no step named 'gone'"}))
    assert form.errors["force_steps"] == ["no step named 'gone'"]


# ---- the command line ----------------------------------------------------------------------


def cli_run(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "run", *args)
    return info.value.code


def test_cli_force_step_is_repeatable_and_forces_those_steps(pipeline, alice):
    assert cli_run(pipeline.name, "--user", "alice", "--force-step", "train", "--force-step", "report") == 0
    assert forced(Run.objects.get()) == {"train", "report"}


def test_cli_unknown_force_step_exits_2_naming_it(pipeline, alice, capsys):
    assert cli_run(pipeline.name, "--user", "alice", "--force-step", "train", "--force-step", "trian") == 2
    assert "--force-step: no step named 'trian'" in capsys.readouterr().err
    assert Run.objects.count() == 0


def test_cli_unknown_force_step_of_a_yaml_file_imports_nothing(team, alice, tmp_path, capsys):
    path = tmp_path / "demo.yml"
    path.write_text(PIPELINE_YAML)
    assert cli_run(str(path), "--user", "alice", "--team", team.name, "--force-step", "nope") == 2
    assert "--force-step: no step named 'nope'" in capsys.readouterr().err
    assert not Pipeline.objects.exists() and Run.objects.count() == 0
