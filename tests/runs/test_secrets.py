"""Secret run inputs without workers: storage, the run form, pages, admin, CLI, fingerprint, masking."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from runs import executor, orchestrator, reuse
from runs.models import Run, StepRun
from runs.secrets import MIN_MASK_LENGTH, Masker, SecretError, secrets_decrypt, secrets_encrypt
from runs.services import RunInputError, run_create, run_rerun
from runs.specs import version_spec
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-Value/with spaces+&"

SECRET_YAML = """
type: pipeline
inputs:
  api_token: {type: secret, description: Token of the model registry}
  extra: {type: secret, optional: true}
  epochs: {type: integer, default: 3}
jobs:
  push:
    type: command
    command: push --token ${{inputs.token}} --epochs ${{inputs.epochs}} $[[--extra ${{inputs.extra}}]]
    inputs:
      token: ${{parent.inputs.api_token}}
      extra: ${{parent.inputs.extra}}
      epochs: ${{parent.inputs.epochs}}
"""


@pytest.fixture
def secret_pipeline(team, alice):
    return make_pipeline(team, alice, name="secretive", yaml_text=SECRET_YAML)


def start(pipeline, user, **inputs) -> Run:
    return run_create(version=pipeline.latest_version, user=user, inputs=inputs)


# ---- storage ------------------------------------------------------------------------------


def test_a_secret_is_stored_encrypted_and_apart_from_the_other_inputs(secret_pipeline, alice):
    run = start(secret_pipeline, alice, api_token=SECRET, epochs="5")
    run.refresh_from_db()
    assert run.inputs == {"epochs": 5}
    assert set(run.secrets) == {"api_token"}
    assert SECRET not in json.dumps(run.secrets)
    assert secrets_decrypt(run.secrets) == {"api_token": SECRET}


def test_a_missing_or_empty_secret_is_refused_without_quoting_anything(secret_pipeline, alice):
    with pytest.raises(RunInputError) as info:
        start(secret_pipeline, alice)
    assert info.value.errors == {
        "api_token": "a value is required: give it, or have a team admin add a team secret named api_token"
    }
    with pytest.raises(RunInputError) as info:
        start(secret_pipeline, alice, api_token="")
    assert info.value.errors == {"api_token": "expected secret: a secret cannot be empty"}
    assert Run.objects.count() == 0


def test_secrets_encrypted_under_an_old_key_decrypt_through_the_fallbacks(settings):
    settings.SECRET_KEY = "old-key"
    stored = secrets_encrypt({"token": SECRET})
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key", ["old-key"]
    assert secrets_decrypt(stored) == {"token": SECRET}
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(SecretError) as info:
        secrets_decrypt(stored)
    assert info.value.name == "token" and SECRET not in str(info.value)


def test_a_rerun_gets_the_secrets_of_its_run(secret_pipeline, alice):
    run = start(secret_pipeline, alice, api_token=SECRET, extra="more-secret")
    again = run_rerun(run=run, user=alice)
    assert again.inputs == {}
    assert secrets_decrypt(again.secrets) == {"api_token": SECRET, "extra": "more-secret"}


def test_a_rerun_whose_secret_cannot_be_decrypted_says_which(secret_pipeline, alice, settings):
    run = start(secret_pipeline, alice, api_token=SECRET)
    settings.SECRET_KEY = "rotated"
    with pytest.raises(RunInputError) as info:
        run_rerun(run=run, user=alice)
    assert "api_token" in info.value.errors


# ---- the run form and the pages -------------------------------------------------------------


def test_run_form_has_a_password_field_that_never_renders_the_value_back(secret_pipeline, client, alice):
    client.force_login(alice)
    url = reverse("run_create", args=[secret_pipeline.pk])
    html = client.get(url).content.decode()
    assert 'type="password" name="in_api_token"' in html
    assert 'autocomplete="new-password"' in html
    assert "Token of the model registry" in html

    # A form error elsewhere re-renders the page: the secret the user typed is not in it.
    response = client.post(url, {"in_api_token": SECRET, "in_epochs": "many"})
    assert response.status_code == 200
    assert "in_epochs" in response.context["form"].errors
    assert SECRET not in response.content.decode()
    assert Run.objects.count() == 0


def test_run_form_starts_a_run_with_the_secret(secret_pipeline, client, alice):
    client.force_login(alice)
    response = client.post(reverse("run_create", args=[secret_pipeline.pk]), {"in_api_token": SECRET})
    run = Run.objects.get()
    assert response.status_code == 302
    assert run.inputs == {}
    assert secrets_decrypt(run.secrets) == {"api_token": SECRET}


def test_run_page_names_the_secret_and_shows_stars(secret_pipeline, client, alice):
    run = start(secret_pipeline, alice, api_token=SECRET)
    client.force_login(alice)
    for url in (reverse("run_detail", args=[run.pk]), reverse("run_parts", args=[run.pk])):
        body = client.get(url).content.decode()
        assert "api_token=***" in body
        assert SECRET not in body and run.secrets["api_token"] not in body


def test_the_admin_shows_neither_the_secret_nor_its_ciphertext(secret_pipeline, client, alice):
    run = start(secret_pipeline, alice, api_token=SECRET)
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    body = client.get(reverse("admin:runs_run_change", args=[run.pk])).content.decode()
    assert "Inputs:" in body  # the read-only change page, with the run's other fields
    assert SECRET not in body and run.secrets["api_token"] not in body


# ---- the CLI --------------------------------------------------------------------------------


def cli_run(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "run", *args)
    return info.value.code


def test_cli_reads_a_secret_from_an_environment_variable(secret_pipeline, alice, monkeypatch, capsys):
    monkeypatch.setenv("REGISTRY_TOKEN", SECRET)
    assert cli_run("secretive", "--user", "alice", "--secret", "api_token=REGISTRY_TOKEN") == 0
    run = Run.objects.get()
    assert secrets_decrypt(run.secrets) == {"api_token": SECRET}
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err

    monkeypatch.setenv("api_token", "from-the-same-name")
    assert cli_run("secretive", "--user", "alice", "--secret", "api_token") == 0
    assert secrets_decrypt(Run.objects.first().secrets) == {"api_token": "from-the-same-name"}


def test_cli_refuses_a_missing_variable_and_a_non_secret_input(secret_pipeline, alice, monkeypatch, capsys):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert cli_run("secretive", "--user", "alice", "--secret", "api_token=NOT_SET_ANYWHERE") == 2
    assert "environment variable NOT_SET_ANYWHERE is not set" in capsys.readouterr().err
    monkeypatch.setenv("EPOCHS", "4")
    assert cli_run("secretive", "--user", "alice", "--secret", "epochs=EPOCHS") == 2
    assert "--secret epochs: an input of type integer; --secret is for inputs of type secret" in capsys.readouterr().err
    assert Run.objects.count() == 0


def test_cli_set_on_a_secret_works_but_warns_about_shell_history(secret_pipeline, alice, capsys):
    assert cli_run("secretive", "--user", "alice", "--set", f"api_token={SECRET}") == 0
    assert "shell's history" in capsys.readouterr().err
    assert secrets_decrypt(Run.objects.get().secrets) == {"api_token": SECRET}


# ---- fingerprint and "why reused" -------------------------------------------------------------


def parts_of(pipeline, run: Run) -> dict:
    spec = version_spec(pipeline.latest_version)
    return orchestrator.fingerprint_parts(
        spec,
        spec.jobs["push"],
        run_inputs=run.inputs,
        file_map={},
        upstream_outputs={},
        secret_names=run.secrets,
    )


def test_a_secret_takes_part_in_the_fingerprint_only_as_given_or_not(secret_pipeline, alice):
    first = parts_of(secret_pipeline, start(secret_pipeline, alice, api_token=SECRET))
    rotated = parts_of(secret_pipeline, start(secret_pipeline, alice, api_token="another-token"))
    assert first["inputs"]["token"] == {"secret": "given"}
    assert first["inputs"]["extra"] == {"secret": "not given"}
    assert orchestrator.fingerprint(first) == orchestrator.fingerprint(rotated)
    assert SECRET not in json.dumps(first)

    with_extra = parts_of(secret_pipeline, start(secret_pipeline, alice, api_token=SECRET, extra="x-extra"))
    assert orchestrator.fingerprint(with_extra) != orchestrator.fingerprint(first)
    assert reuse.diff_parts(first, with_extra) == ["secret input extra was not given, now given"]


# ---- the executor's preparation and masking ---------------------------------------------------


def test_prepare_passes_secrets_by_environment_and_keeps_them_out_of_the_command(secret_pipeline, alice, tmp_path):
    run = start(secret_pipeline, alice, api_token=SECRET)
    step_run = StepRun.objects.select_related("run").get(run=run, name="push")
    spec = version_spec(secret_pipeline.latest_version)
    prepared = executor.prepare(step_run, spec, spec.jobs["push"], {}, tmp_path / "work")
    assert prepared.command == 'push --token "${STEPWISE_SECRET_TOKEN}" --epochs 3 '
    assert prepared.env["STEPWISE_SECRET_TOKEN"] == SECRET
    assert "STEPWISE_SECRET_EXTRA" not in prepared.env
    assert prepared.secrets == [SECRET]


def test_prepare_drops_inherited_secret_variables_and_wins_over_environment_variables(
    secret_pipeline, alice, tmp_path, monkeypatch
):
    monkeypatch.setenv("STEPWISE_SECRET_EXTRA", "from-the-worker")
    run = start(secret_pipeline, alice, api_token=SECRET)
    step_run = StepRun.objects.select_related("run").get(run=run, name="push")
    spec = version_spec(secret_pipeline.latest_version)
    step = spec.jobs["push"]
    step.environment_variables = {"STEPWISE_SECRET_TOKEN": "from-the-yaml"}
    try:
        prepared = executor.prepare(step_run, spec, step, {}, tmp_path / "work")
    finally:
        step.environment_variables = {}  # the spec is cached per version
    assert prepared.env["STEPWISE_SECRET_TOKEN"] == SECRET
    assert "STEPWISE_SECRET_EXTRA" not in prepared.env


def test_prepare_keeps_the_workers_own_credentials_from_the_step(
    secret_pipeline, alice, tmp_path, monkeypatch, settings
):
    worker_only = {
        "SECRET_KEY": "the-signing-key",
        "DATABASE_URL": "postgres://stepwise:pw@db/stepwise",
        "REDIS_URL": "redis://:pw@cache:6379/0",
        "STEPWISE_ARTIFACTS_OPTIONS": '{"key": "k", "secret": "s"}',
        "DJANGO_SETTINGS_MODULE": "pipelines_ui.settings",
    }
    for key, value in worker_only.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("CLOUD_TOKEN", "a-credential-nobody-listed")
    settings.STEPWISE_STEP_ENV_PASSTHROUGH = ["HTTPS_PROXY"]
    run = start(secret_pipeline, alice, api_token=SECRET)
    step_run = StepRun.objects.select_related("run").get(run=run, name="push")
    spec = version_spec(secret_pipeline.latest_version)
    prepared = executor.prepare(step_run, spec, spec.jobs["push"], {}, tmp_path / "work")
    assert not set(worker_only) & set(prepared.env)
    assert not any(value in prepared.env.values() for value in worker_only.values())
    # An allow-list: what the worker's environment holds reaches the step only when named.
    assert "CLOUD_TOKEN" not in prepared.env
    assert prepared.env["HTTPS_PROXY"] == "http://proxy:3128"


def test_masker_stars_every_form_of_a_secret_in_a_line():
    masker = Masker([SECRET, "line-one\nline-two", "abc"])
    assert masker.mask(f"token={SECRET}; again {SECRET}") == "token=***; again ***"
    assert masker.mask(json.dumps({"t": SECRET})) == '{"t": "***"}'
    assert masker.mask("url?t=s3cr3t-Value%2Fwith%20spaces%2B%26") == "url?t=***"
    assert masker.mask("q=s3cr3t-Value%2Fwith+spaces%2B%26") == "q=***"
    # A multi-line secret is masked line by line, as logs are stored.
    assert masker.mask("line-one") == "***" and masker.mask("> line-two") == "> ***"
    # Values shorter than MIN_MASK_LENGTH are left alone: starring them would wreck the log.
    assert len("abc") < MIN_MASK_LENGTH and masker.mask("abc def") == "abc def"
    assert not Masker([]) and not Masker(["ab"])


def test_masker_stars_a_secret_cut_in_half_by_line_truncation():
    masker = Masker([SECRET])
    assert masker.mask("xxxx" + SECRET[:9], cut=True) == "xxxx***"
    assert masker.mask("xxxx" + SECRET[:9]) == "xxxx" + SECRET[:9]


def test_attempt_masks_lines_before_they_are_stored_or_sent(secret_pipeline, alice, tmp_path, settings):
    run = start(secret_pipeline, alice, api_token=SECRET)
    step_run = StepRun.objects.select_related("run").get(run=run, name="push")
    spec = version_spec(secret_pipeline.latest_version)
    attempt = executor.Attempt(step_run, executor.prepare(step_run, spec, spec.jobs["push"], {}, tmp_path / "w"))
    settings.STEPWISE_LOG_LINE_MAX = 20
    splitter = executor.LineSplitter(settings.STEPWISE_LOG_LINE_MAX)
    # Whole lines longer than the limit are cut silently; a line still unfinished is cut and marked.
    attempt.add_lines(splitter.feed(f"{SECRET}\ngot {SECRET}\nxxxxxxxxx{SECRET}".encode()))
    assert attempt.pending_lines == ["***", "got ***", "xxxxxxxxx***" + executor.LINE_TRUNCATED]
