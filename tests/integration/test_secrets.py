"""A secret input end to end: the CLI gives it from an environment variable, a real worker runs a
step that prints it every way it can, and nothing that Stepwise stores or shows holds the value,
while the step itself received it whole."""

from __future__ import annotations

import hashlib
import io
import json
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from pipelines_ui import team_secrets
from runs.artifacts import artifact_path
from runs.models import Run, StepState
from runs.services import run_rerun
from tests.integration.test_execution import cli, log_text, steps_of, wait_run

pytestmark = pytest.mark.integration

STEP = r"""
import hashlib, json, os, sys, urllib.parse

from_env = os.environ["STEPWISE_SECRET_TOKEN"]
from_arg = sys.argv[1]
print("env:", from_env)
print("arg:", from_arg, file=sys.stderr)
print("json:", json.dumps({"token": from_env}))
print("url: https://example.com/?t=" + urllib.parse.quote(from_env, safe=""))
print("twice:", from_env + from_env, "done")
print("not a secret: hello")
digest = lambda value: hashlib.sha256(value.encode()).hexdigest()
with open(os.path.join(sys.argv[2], "received.txt"), "w") as out:
    out.write(digest(from_env) + " " + digest(from_arg))
"""

PIPELINE = """
type: pipeline
inputs:
  registry_token: {type: secret, description: the token}
jobs:
  push:
    type: command
    code: ./code
    command: python step.py ${{inputs.token}} ${{outputs.out}}
    inputs:
      token: ${{parent.inputs.registry_token}}
    outputs:
      out: {type: uri_folder}
"""


def write_pipeline(folder: Path) -> Path:
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "step.py").write_text(STEP)
    (folder / "pipeline.yml").write_text(textwrap.dedent(PIPELINE))
    return folder / "pipeline.yml"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run_with_secret(path: Path, env: dict[str, str], value: str, *extra: str) -> dict:
    result = cli(
        "run", str(path), "--user", "alice", "--secret", "registry_token=REGISTRY_TOKEN", "--json", *extra,
        env={**env, "REGISTRY_TOKEN": value},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert value not in result.stdout + result.stderr
    return json.loads(result.stdout)


def zip_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(archive.read(name).decode(errors="replace") for name in archive.namelist())


def test_a_secret_reaches_the_step_whole_and_nothing_stored_or_shown_holds_it(workers, alice, team, tmp_path):
    workers.start(1)
    # Shell-hostile, so that a quoting mistake in the rendered command shows.
    secret = f"tok-{uuid.uuid4().hex} it's $HOME & `id`"
    path = write_pipeline(tmp_path / "secretive")

    summary = run_with_secret(path, workers.env(), secret)
    assert summary["state"] == "succeeded", workers.logs()
    push = summary["steps"]["push"]
    # The step got the real value, through its environment and through ${{inputs.token}}.
    received = Path(push["outputs"]["out"], "received.txt").read_text()
    assert received == f"{sha(secret)} {sha(secret)}"

    run = Run.objects.get(pk=summary["run"])
    step = steps_of(run)["push"]
    log = log_text(step)
    assert log.split("\n") == [
        "env: ***",
        "arg: ***",
        'json: {"token": "***"}',
        "url: https://example.com/?t=***",
        "twice: ****** done",
        "not a secret: hello",
    ]
    # The stored command is the template; the one that ran referred to the environment variable.
    assert step.fingerprint_parts["command"] == "python step.py ${{inputs.token}} ${{outputs.out}}"
    assert step.fingerprint_parts["inputs"]["token"] == {"secret": "given"}
    assert secret not in json.dumps(step.fingerprint_parts)

    client = Client()
    client.force_login(alice)
    shown = [
        client.get(reverse("run_detail", args=[run.pk])),
        client.get(reverse("run_step", args=[run.pk, "push"])),
        client.get(reverse("run_parts", args=[run.pk]) + "?step=push"),
        client.get(reverse("step_log", args=[run.pk, "push"])),
        client.get(reverse("step_log", args=[run.pk, "push"]) + "?download=1"),
        client.get(reverse("run_list")),
        client.get(reverse("pipeline_detail", args=[run.pipeline_id])),
        client.get(reverse("run_create", args=[run.pipeline_id])),
    ]
    for response in shown:
        assert response.status_code == 200
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert secret.encode() not in body, response.request["PATH_INFO"]
    assert b"registry_token=***" in shown[0].content
    assert "env: ***" in shown[3].json()["lines"]

    export = client.get(reverse("pipeline_export", args=[run.pipeline_id]))
    assert export.status_code == 200
    exported = zip_text(export.content)
    assert "type: secret" in exported and secret not in exported

    # Nothing in the database holds it in clear: not the run, its steps, logs, transitions, versions.
    dump = io.StringIO()
    call_command("dumpdata", "runs", "pipelines_ui", stdout=dump)
    assert secret not in dump.getvalue()
    assert run.secrets and secret not in json.dumps(run.secrets)
    assert secret not in workers.logs()

    # A rotated token reuses the result (its value takes no part in the fingerprint) ...
    rotated = f"tok-{uuid.uuid4().hex}-rotated"
    again = run_with_secret(path, workers.env(), rotated)
    assert again["steps"]["push"]["state"] == StepState.REUSED
    assert again["steps"]["push"]["reused_from"] == run.pk
    page = client.get(reverse("run_step", args=[again["run"], "push"])).content
    assert b"secret, given" in page and rotated.encode() not in page and secret.encode() not in page

    # ... unless forced, and then the step gets the new value.
    forced = run_with_secret(path, workers.env(), rotated, "--force-rerun")
    assert forced["steps"]["push"]["state"] == StepState.SUCCEEDED
    received = Path(forced["steps"]["push"]["outputs"]["out"], "received.txt").read_text()
    assert received == f"{sha(rotated)} {sha(rotated)}"
    assert log_text(steps_of(Run.objects.get(pk=forced["run"]))["push"]).startswith("env: ***\narg: ***\n")


def test_a_team_secret_reaches_a_step_started_without_it_and_its_log_masks_it(workers, alice, team, tmp_path):
    """No --secret: the run takes the team's secret of the input's name, and a rerun after the
    admin replaced it takes the new value."""
    workers.start(1)
    secret = f"team-{uuid.uuid4().hex} it's $HOME"
    team_secrets.secret_set(team=team, name="registry_token", value=secret, by=alice)
    path = write_pipeline(tmp_path / "secretive")

    result = cli("run", str(path), "--user", "alice", "--json", env=workers.env())
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded", workers.logs()
    received = Path(summary["steps"]["push"]["outputs"]["out"], "received.txt").read_text()
    assert received == f"{sha(secret)} {sha(secret)}"
    run = Run.objects.get(pk=summary["run"])
    assert run.team_secrets == ["registry_token"]
    assert log_text(steps_of(run)["push"]).startswith("env: ***\narg: ***\n")
    assert secret not in workers.logs()

    rotated = f"team-{uuid.uuid4().hex}-rotated"
    team_secrets.secret_set(team=team, name="registry_token", value=rotated, by=alice)
    # Forced: the fingerprint leaves the value out, so the step would be reused.
    again = wait_run(run_rerun(run=run, user=alice, mode="from", from_step="push"))
    assert again.state == "succeeded", workers.logs()
    assert again.team_secrets == ["registry_token"]
    artifact = steps_of(again)["push"].outputs.get(name="out").artifact
    received = Path(artifact_path(artifact), "received.txt").read_text()
    assert received == f"{sha(rotated)} {sha(rotated)}"
