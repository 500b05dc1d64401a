"""The management commands as users type them: real subprocesses against the test database,
their output, the files they write and their exit codes (0 done, 1 failed, 2 invalid input)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipelines_ui.models import Pipeline
from runs import artifacts, services
from runs.models import Artifact, Run, RunState, StepOutput, StepState
from tests.integration.conftest import ROOT, Workers, wait_for
from tests.integration.test_execution import DIAMOND, import_yaml, steps_of, wait_run
from tests.integration.test_gc import age

pytestmark = pytest.mark.integration

HELLO = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello
settings:
  default_compute: azureml:cpu-cluster
jobs:
  greet:
    type: command
    command: echo hello ${{inputs.who}} > ${{outputs.out}}/greeting.txt
    inputs:
      who: world
    outputs:
      out: {type: uri_folder}
"""


@pytest.fixture
def env(compute_target, tmp_path) -> dict[str, str]:
    """The environment a user's shell has beside a serving install: the test database's."""
    return Workers(compute_target.queue, tmp_path).env()


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(folder: Path, text: str, name: str = "pipeline.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


# ---- pipelines validate ------------------------------------------------------------------------


def test_validate_a_good_file_exits_0_and_lists_tolerated_keys_as_warnings(env, tmp_path):
    path = write(tmp_path / "good", HELLO.replace("settings:\n", "settings:\n  default_datastor: azureml:x\n"))
    result = manage("pipelines", "validate", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: valid pipeline with 1 steps"
    assert "warning:" in result.stderr and "default_datastor" in result.stderr


def test_validate_a_bad_file_exits_2_naming_the_file_the_job_and_the_field(env, tmp_path):
    path = write(tmp_path / "bad", HELLO.replace("type: command", "type: sweepish"))
    result = manage("pipelines", "validate", str(path), env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr and "greet" in result.stderr and "type" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_a_missing_file_or_a_wrong_usage_exits_2(env, tmp_path):
    result = manage("pipelines", "validate", str(tmp_path / "nowhere.yml"), env=env)
    assert result.returncode == 2
    assert "nowhere.yml: no such file" in result.stderr
    usage = manage("pipelines", "validate", env=env)
    assert usage.returncode == 2
    assert "the following arguments are required: file" in usage.stderr


def test_a_command_on_a_database_not_set_up_says_to_run_setup(env, tmp_path):
    good = write(tmp_path, "type: pipeline\njobs:\n  a:\n    command: echo hi\n")
    result = manage("pipelines", "validate", str(good), env={**env, "DATABASE_URL": f"sqlite:///{tmp_path}/new.db"})
    assert result.returncode == 1
    assert "the database is not set up" in result.stderr and "make setup" in result.stderr
    assert "Traceback" not in result.stderr


# ---- pipelines import --------------------------------------------------------------------------


def test_import_into_a_named_team_prints_the_version_and_saves_it(env, alice, team, other_team, tmp_path):
    alice.is_superuser = True
    alice.save()
    path = write(tmp_path / "hello", HELLO)
    result = manage("pipelines", "import", str(path), "--team", other_team.name, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported hello version 1"
    pipeline = Pipeline.objects.get(name="hello")
    assert pipeline.team == other_team
    assert pipeline.latest_version.number == 1

    # The same content again makes no version; a change makes version 2 of the same pipeline.
    again = manage("pipelines", "import", str(path), "--team", other_team.name, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "imported hello version 1"
    path.write_text(HELLO.replace("who: world", "who: everyone"))
    changed = manage("pipelines", "import", str(path), "--team", other_team.name, env=env)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "imported hello version 2"
    assert Pipeline.objects.get(name="hello").versions.count() == 2


def test_import_of_an_invalid_file_exits_2_and_imports_nothing(env, alice, team, tmp_path):
    alice.is_superuser = True
    alice.save()
    path = write(tmp_path / "bad", HELLO.replace("${{inputs.who}}", "${{inputs.nobody}}"))
    result = manage("pipelines", "import", str(path), "--team", team.name, env=env)
    assert result.returncode == 2
    assert str(path) in result.stderr and "greet" in result.stderr and "nobody" in result.stderr
    assert not Pipeline.objects.exists()


def test_import_into_an_unknown_team_exits_2(env, alice, team, tmp_path):
    alice.is_superuser = True
    alice.save()
    result = manage("pipelines", "import", str(write(tmp_path / "h", HELLO)), "--team", "Nobody's", env=env)
    assert result.returncode == 2
    assert 'no team named "Nobody\'s"' in result.stderr
    assert not Pipeline.objects.exists()


# ---- pipelines export --------------------------------------------------------------------------


def test_export_writes_the_latest_or_the_given_version_as_a_folder_that_imports_back(env, alice, team, tmp_path):
    version_1 = import_yaml(tmp_path, HELLO, alice, team, name="hello")
    import_yaml(tmp_path, HELLO.replace("who: world", "who: everyone"), alice, team, name="hello")
    assert Pipeline.objects.get(name="hello").versions.count() == 2

    latest_dir = tmp_path / "out-latest"
    result = manage("pipelines", "export", "hello", "-o", str(latest_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"exported hello version 2 to {latest_dir}"
    exported = yaml.safe_load((latest_dir / "pipeline.yml").read_text())
    assert exported["jobs"]["greet"]["inputs"]["who"] == "everyone"

    first_dir = tmp_path / "out-1"
    result = manage("pipelines", "export", "hello", "--version", "1", "-o", str(first_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert f"version {version_1.number} to {first_dir}" in result.stdout
    assert yaml.safe_load((first_dir / "pipeline.yml").read_text())["jobs"]["greet"]["inputs"]["who"] == "world"

    # The export is the interchange format: it validates as it is.
    check = manage("pipelines", "validate", str(first_dir / "pipeline.yml"), env=env)
    assert check.returncode == 0, check.stderr


def test_export_into_a_folder_that_holds_files_writes_a_subfolder(env, alice, team, tmp_path):
    import_yaml(tmp_path, HELLO, alice, team, name="hello")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = manage("pipelines", "export", "hello", "-o", str(busy), env=env)
    assert result.returncode == 0, result.stderr
    assert (busy / "hello" / "pipeline.yml").is_file()
    assert (busy / "notes.txt").read_text() == "mine"


def test_export_of_an_unknown_pipeline_or_version_exits_2_and_writes_nothing(env, alice, team, tmp_path):
    import_yaml(tmp_path, HELLO, alice, team, name="hello")
    out = tmp_path / "out"
    result = manage("pipelines", "export", "nothing", "-o", str(out), env=env)
    assert result.returncode == 2 and "no pipeline named 'nothing'" in result.stderr
    result = manage("pipelines", "export", "hello", "--version", "7", "-o", str(out), env=env)
    assert result.returncode == 2 and "'hello' has no version 7" in result.stderr
    assert not out.exists()


def test_export_to_a_file_exits_2_naming_it(env, alice, team, tmp_path):
    import_yaml(tmp_path, HELLO, alice, team, name="hello")
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    result = manage("pipelines", "export", "hello", "-o", str(target), env=env)
    assert result.returncode == 2 and "is a file: -o takes a folder" in result.stderr
    assert "Traceback" not in result.stderr and target.read_text() == "mine"


# ---- pipelines gc ------------------------------------------------------------------------------


def test_gc_dry_run_lists_and_gc_removes_an_unreferenced_artifact(workers, env, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, DIAMOND, alice, team)
    run = wait_run(services.run_create(version=version, user=alice))
    assert run.state == RunState.SUCCEEDED, workers.logs()
    for artifact in Artifact.objects.all():
        age(artifact)
    doomed_output = StepOutput.objects.select_related("artifact").get(step_run__run=run, step_run__name="c")
    doomed = doomed_output.artifact
    doomed_output.delete()
    kept = list(Artifact.objects.exclude(pk=doomed.pk))
    assert kept

    dry = manage("pipelines", "gc", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith("would remove 1 unreferenced artifacts (")
    assert f"  {doomed.sha256}" in dry.stdout.splitlines()
    assert artifacts.artifact_dir(doomed.sha256).exists()

    done = manage("pipelines", "gc", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("removed 1 unreferenced artifacts (")
    assert not Artifact.objects.filter(pk=doomed.pk).exists()
    assert not artifacts.artifact_dir(doomed.sha256).exists()
    assert all(artifacts.artifact_intact(a, verify_content=True) for a in kept)

    nothing = manage("pipelines", "gc", env=env)
    assert nothing.returncode == 0
    assert nothing.stdout.strip() == "removed 0 unreferenced artifacts (0 bytes) and 0 orphaned folders"


# ---- reconcile ---------------------------------------------------------------------------------


def test_reconcile_once_prints_what_it_did(env, compute_target):
    result = manage("reconcile", env=env)
    assert result.returncode == 0, result.stderr
    acted = result.stdout.strip()
    for key in ("worker_lost", "requeued", "timed_out"):
        assert f"'{key}': []" in acted


def test_reconcile_loop_acts_on_its_own_and_stops_cleanly_on_sigterm(env, alice, team, tmp_path):
    # No worker: the step stays queued, so only the loop can end the run (its timeout).
    version = import_yaml(
        tmp_path, "type: pipeline\njobs:\n  wait:\n    type: command\n    command: sleep 600\n", alice, team
    )
    run = services.run_create(version=version, user=alice, timeout_s=1)
    log = tmp_path / "reconcile.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "reconcile", "--loop", "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: _ended(run),
            timeout=60,
            message="the loop to time the run out",
            details=lambda: log.read_text(errors="replace"),
        )
        assert run.state == RunState.FAILED and run.reason.startswith("timeout"), run.reason
        assert steps_of(run)["wait"].state in (StepState.CANCELED, StepState.SKIPPED)
        assert proc.poll() is None, "the loop keeps running after acting"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(errors="replace")


def _ended(run) -> bool:
    run.refresh_from_db()
    return run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED)


# ---- STEPWISE_REUSE_VERIFY ---------------------------------------------------------------------


def _corrupt(sha256: str) -> None:
    """Change an output's bytes in the store, keeping its files, names and sizes."""
    folder = artifacts.artifact_dir(sha256)
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert files, f"no files under {folder}"
    for path in files:
        data = path.read_bytes()
        os.chmod(path, 0o644)
        path.write_bytes(bytes(b ^ 1 for b in data))


@pytest.mark.parametrize(("verify", "reused"), [("hash", False), ("exists", True)])
def test_reuse_verify_hash_refuses_a_corrupted_output_and_exists_trusts_it(
    workers, env, alice, team, tmp_path, verify, reused
):
    alice.is_superuser = True
    alice.save()
    workers.extra_env["STEPWISE_REUSE_VERIFY"] = verify
    workers.start(1)
    path = write(tmp_path / "hello", HELLO)
    env = {**env, "STEPWISE_REUSE_VERIFY": verify}
    first = manage("pipelines", "run", str(path), "--team", team.name, "--json", env=env)
    assert first.returncode == 0, first.stderr + workers.logs()
    origin = json.loads(first.stdout)
    greet = StepOutput.objects.select_related("artifact").get(step_run__run_id=origin["run"], step_run__name="greet")
    _corrupt(greet.artifact.sha256)

    second = manage("pipelines", "run", str(path), "--team", team.name, "--json", env=env)
    assert second.returncode == 0, second.stderr + workers.logs()
    step = json.loads(second.stdout)["steps"]["greet"]
    if reused:
        assert step["state"] == "reused" and step["reused_from"] == origin["run"]
    else:
        assert step["state"] == "succeeded" and step["reused_from"] is None
        assert Path(step["outputs"]["out"], "greeting.txt").read_text() == "hello world\n"


def test_a_wrong_reuse_verify_value_is_refused_by_name(env):
    result = manage("pipelines", "validate", "x.yml", env={**env, "STEPWISE_REUSE_VERIFY": "sometimes"})
    assert result.returncode != 0
    assert "STEPWISE_REUSE_VERIFY='sometimes': use hash or exists" in result.stderr


def test_unknown_compute_names_run_on_the_default_target_only_when_the_environment_says_so(env):
    path = str(ROOT / "tests" / "azureml_corpus" / "compute_unknown_to_default" / "pipeline.yml")
    refused = manage("pipelines", "validate", path, env=env)
    assert refused.returncode == 2
    assert "error: " in refused.stderr and "unknown compute 'gpu-cluster' (known compute targets:" in refused.stderr

    allowed = manage("pipelines", "validate", path, env={**env, "STEPWISE_UNKNOWN_COMPUTE": "default"})
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: " in allowed.stderr and "'gpu-cluster' runs on the default compute target" in allowed.stderr

    wrong = manage("pipelines", "validate", path, env={**env, "STEPWISE_UNKNOWN_COMPUTE": "maybe"})
    assert wrong.returncode != 0
    assert "STEPWISE_UNKNOWN_COMPUTE='maybe': use error or default" in wrong.stderr


# ---- pipelines run NAME --set --force-rerun ----------------------------------------------------


def test_run_by_name_with_set_and_force_rerun(workers, env, alice, team, tmp_path):
    alice.is_superuser = True
    alice.save()
    workers.start(1)
    with_parameter = HELLO.replace("jobs:", "inputs:\n  who: world\njobs:").replace(
        "      who: world", "      who: ${{parent.inputs.who}}"
    )
    import_yaml(tmp_path, with_parameter, alice, team, name="hello")

    first = manage("pipelines", "run", "hello", "--set", "who=you", "--wait", env=env)
    assert first.returncode == 0, first.stderr + workers.logs()
    assert "greet: succeeded" in first.stderr

    same = manage("pipelines", "run", "hello", "--set", "who=you", "--json", env=env)
    assert same.returncode == 0, same.stderr
    reused = json.loads(same.stdout)["steps"]["greet"]
    assert reused["state"] == "reused"
    assert Path(reused["outputs"]["out"], "greeting.txt").read_text() == "hello you\n"

    forced = manage("pipelines", "run", "hello", "--set", "who=you", "--force-rerun", "--json", env=env)
    assert forced.returncode == 0, forced.stderr
    step = json.loads(forced.stdout)["steps"]["greet"]
    assert step["state"] == "succeeded" and step["reused_from"] is None and step["attempts"] == 1

    unknown = manage("pipelines", "run", "hello", "--set", "nobody=1", "--json", env=env)
    assert unknown.returncode == 2
    assert "nobody" in unknown.stderr and unknown.stdout == ""


def test_run_by_name_takes_the_named_team_s_pipeline(env, alice, team, other_team, tmp_path):
    alice.is_superuser = True
    alice.save()
    ours = import_yaml(tmp_path, HELLO, alice, team, name="hello").pipeline
    theirs = import_yaml(tmp_path, HELLO, alice, other_team, name="hello").pipeline

    ambiguous = manage("pipelines", "run", "hello", env=env)
    assert ambiguous.returncode == 2 and "'hello' is in several teams: pass --team" in ambiguous.stderr
    started = manage("pipelines", "run", "hello", "--team", other_team.name, env=env)
    assert started.returncode == 0, started.stderr
    assert [r.pipeline_id for r in Run.objects.all()] == [theirs.pk]
    assert ours.runs.count() == 0
    missing = manage("pipelines", "run", "hello", "--team", "Nobody", env=env)
    assert missing.returncode == 2 and "neither a YAML file nor a pipeline in team 'Nobody'" in missing.stderr


def test_run_of_a_file_with_a_wrong_input_imports_nothing(env, alice, team, tmp_path):
    alice.is_superuser = True
    alice.save()
    path = write(tmp_path / "new", HELLO.replace("display_name: hello", "display_name: fresh"))
    result = manage("pipelines", "run", str(path), "--team", team.name, "--set", "nobody=1", env=env)
    assert result.returncode == 2 and "nobody" in result.stderr
    assert not Pipeline.objects.filter(name="fresh").exists()


def test_validate_for_an_unknown_team_exits_2(env, tmp_path):
    result = manage("pipelines", "validate", str(write(tmp_path / "h", HELLO)), "--team", "Nobody's", env=env)
    assert result.returncode == 2
    assert 'no team named "Nobody\'s"' in result.stderr


# ---- stepwise_token ----------------------------------------------------------------------------


def test_stepwise_token_create_prints_only_a_token_that_works(env, alice, team):
    from django.test import Client

    result = manage(
        "stepwise_token", "create", "alice", "--team", team.name, "--scope", "read", "--expires-days", "7", env=env
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("swt_") and result.stdout == token + "\n"
    teams = Client().get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert teams.status_code == 200
    assert [t["name"] for t in teams.json()["results"]] == [team.name]

    unknown = manage("stepwise_token", "create", "nobody", env=env)
    assert unknown.returncode == 1
    assert "no user named 'nobody'" in unknown.stderr and unknown.stdout == ""
