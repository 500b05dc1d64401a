"""The SDK and the `stepwise` CLI against a served app with a real worker (design.md, Python SDK and remote CLI)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipelines_ui.api.tokens import token_create
from pipelines_ui.models import PipelineVersion, Role
from runs.models import Run
from stepwise.client import Client, NotFound, ValidationError
from stepwise.sdk import Output, command, load_component, pipeline
from stepwise.spec import SpecError
from stepwise.spec import load_pipeline as spec_load_pipeline
from tests.browser.conftest import serve_app
from tests.conftest import make_user

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PREP = (
    "import sys, pathlib\nout = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'rows.txt').write_text('1\\n2\\n3\\n')\nprint('prepared 3 rows')\n"
)
TRAIN = (
    "import argparse, pathlib\n"
    "p = argparse.ArgumentParser(); p.add_argument('--data'); p.add_argument('--max_iter', type=int);"
    " p.add_argument('--model')\n"
    "a = p.parse_args()\n"
    "rows = (pathlib.Path(a.data) / 'rows.txt').read_text().split()\n"
    "print(f'training on {len(rows)} rows for {a.max_iter} iterations')\n"
    "out = pathlib.Path(a.model); out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'model.txt').write_text(f'max_iter={a.max_iter} rows={len(rows)}')\n"
)
TRAIN_YML = """\
type: command
name: train
inputs:
  data: {type: uri_folder}
  max_iter: {type: integer, default: 10}
outputs:
  model: {type: uri_folder}
code: ./src
command: python train.py --data ${{inputs.data}} --max_iter ${{inputs.max_iter}} --model ${{outputs.model}}
"""
TWIN = """\
type: pipeline
name: digits
settings:
  default_compute: cpu-cluster
inputs:
  max_iter: {type: integer, default: 100}
outputs:
  model: {type: uri_folder}
jobs:
  prep_data:
    type: command
    code: ./src
    command: python prep.py --out ${{outputs.data}}
    outputs:
      data: {type: uri_folder}
  train_model:
    type: command
    component: ./train.yml
    inputs:
      data: ${{parent.jobs.prep_data.outputs.data}}
      max_iter: ${{parent.inputs.max_iter}}
    outputs:
      model: ${{parent.outputs.model}}
"""
BROKEN = """\
type: pipeline
name: broken
jobs:
  hello:
    type: command
    command: echo ${{inputs.missing}}
"""
FAILING = """\
type: pipeline
name: failing
jobs:
  boom:
    type: command
    command: python -c "import sys; print('about to fail'); sys.exit(3)"
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "prep.py").write_text(PREP)
    (proj / "src" / "train.py").write_text(TRAIN)
    (proj / "train.yml").write_text(TRAIN_YML)
    (proj / "pipeline.yml").write_text(TWIN)
    (proj / "broken.yml").write_text(BROKEN)
    (proj / "failing.yml").write_text(FAILING)
    proj.chmod(0o755)
    monkeypatch.chdir(proj)
    return proj


@pytest.fixture
def server(workers, tmp_path):
    """daphne on the test database and one worker, sharing one artifact store and working folder."""
    workers.extra_env.update(STEPWISE_ARTIFACTS=str(tmp_path / "artifacts"), STEPWISE_WORKDIR=str(tmp_path / "work"))
    workers.start()
    with serve_app(tmp_path) as base:
        yield base


@pytest.fixture
def token(server) -> str:
    from pipelines_ui.models import Team

    team = Team.objects.create(name="ml")
    alice = make_user("alice", team, Role.EDITOR)
    return token_create(user=alice, name="sdk", scopes=["read", "run", "write"]).secret


def digits_pipeline():
    prep = command(
        name="prep",
        code="./src",
        command="python prep.py --out ${{outputs.data}}",
        outputs={"data": Output(type="uri_folder")},
    )
    train = load_component("train.yml")

    @pipeline(name="digits", default_compute="cpu-cluster")
    def digits(max_iter: int = 100):
        prep_data = prep()
        train_model = train(data=prep_data.outputs.data, max_iter=max_iter)
        return {"model": train_model.outputs.model}

    return digits


def test_sdk_pipeline_runs_reuses_and_downloads_through_the_client(server, token, project, tmp_path):
    client = Client(server, token)
    digits = digits_pipeline()
    run = client.runs.create(digits(max_iter=7), team="ml")
    run.wait(progress=True, timeout=120)
    assert run.state == "succeeded", run.data
    assert {name: s.state for name, s in run.steps.items()} == {"prep_data": "succeeded", "train_model": "succeeded"}

    # The version the server stored is the one the SDK computed, and its YAML twin is that same version.
    version = PipelineVersion.objects.get(pipeline_id=run.data["pipeline"], number=run.data["version"])
    assert version.content_hash == digits().content_hash()
    twin, _ = spec_load_pipeline(project / "pipeline.yml")
    imported = client.pipelines.create(project / "pipeline.yml", team="ml")
    assert (imported["id"], imported["version"]) == (run.data["pipeline"], run.data["version"])
    assert PipelineVersion.objects.filter(pipeline_id=imported["id"]).count() == 1
    assert twin.jobs.keys() == version.spec["jobs"].keys()

    model = run.download("train_model", "model", tmp_path / "downloads")
    assert (model / "model.txt").read_text() == "max_iter=7 rows=3"
    assert "training on 3 rows for 7 iterations" in list(run.logs("train_model"))
    assert run.metrics() == []

    # One parameter changed: prep is reused from the first run, train runs again.
    second = client.runs.create(digits(max_iter=8), team="ml").wait(timeout=120)
    assert second.state == "succeeded"
    assert second.steps["prep_data"].state == "reused"
    assert second.steps["prep_data"].reused_from == run.id
    assert second.steps["train_model"].state == "succeeded"
    assert second.data["version"] == run.data["version"]
    assert [r["id"] for r in client.runs.list(pipeline=run.data["pipeline"])] == [second.id, run.id]

    # prep forced: it executes again, and train is reused, its input hashing the same.
    third = client.runs.create(digits(max_iter=8), team="ml", force_steps=["prep_data"]).wait(timeout=120)
    assert third.state == "succeeded"
    assert third.steps["prep_data"].state == "succeeded"
    assert third.steps["train_model"].state == "reused"
    assert third.steps["train_model"].reused_from == second.id


def test_client_errors_carry_the_servers_problems(server, token, project):
    client = Client(server, token)
    with pytest.raises(ValidationError) as info:
        client.pipelines.create(project / "broken.yml", team="ml")
    assert info.value.status == 400
    assert any(e["job"] == "hello" and e["field"] == "command" for e in info.value.errors)
    assert "hello" in str(info.value)
    with pytest.raises(NotFound):
        client.runs.get(999999)
    with pytest.raises(ValidationError) as info:
        client.runs.create(project / "pipeline.yml", team="ml", force_steps=["nope"])
    assert info.value.errors == [
        {"file": None, "job": None, "field": "force_steps", "line": None, "message": "no step named 'nope'"}
    ]
    with pytest.raises(NotFound):
        client.pipelines.create(project / "pipeline.yml", team="nobody's")


# -- the console script --------------------------------------------------------------------


def stepwise(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stepwise.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def cli_env(server, token, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPWISE_", "DJANGO_"))}
    env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path / "config"), STEPWISE_URL=server)
    env["STEPWISE_TOKEN"] = token
    return env


def test_cli_login_stores_url_and_token_for_the_user_alone(server, token, cli_env, project, tmp_path):
    env = {k: v for k, v in cli_env.items() if k not in ("STEPWISE_URL", "STEPWISE_TOKEN")}
    wrong = stepwise("login", server, "--with-token", "swt_wrong", env=env, cwd=project)
    assert wrong.returncode == 2, wrong.stderr
    assert not (tmp_path / "config" / "stepwise" / "config.json").exists()

    done = stepwise("login", server, "--with-token", token, env=env, cwd=project)
    assert done.returncode == 0, done.stderr
    config = tmp_path / "config" / "stepwise" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"url": server, "token": token}
    listed = stepwise("runs", "--json", env=env, cwd=project)  # the stored login is used
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"runs": []}


def test_cli_commands_output_and_exit_codes(cli_env, project, tmp_path):
    env = cli_env
    ok = stepwise("validate", "pipeline.yml", env=env, cwd=project)
    assert (ok.returncode, ok.stdout.strip()) == (0, "pipeline.yml: valid pipeline with 2 steps")
    bad = stepwise("validate", "broken.yml", "--json", env=env, cwd=project)
    assert bad.returncode == 2
    assert "job 'hello'" in bad.stderr and "field 'command'" in bad.stderr
    assert json.loads(bad.stdout)["errors"][0]["job"] == "hello"
    # Checked as the server imports: a compute target it does not have is an error (exit 2, as
    # `manage.py pipelines validate`), named in the user's file; with no server, checked here only.
    (project / "elsewhere.yml").write_text(TWIN.replace("cpu-cluster", "no-such-cluster"))
    remote = stepwise("validate", "elsewhere.yml", "--json", env=env, cwd=project)
    assert remote.returncode == 2 and "no-such-cluster" in remote.stderr
    assert json.loads(remote.stdout)["errors"][0]["file"] == "elsewhere.yml"
    offline = {k: v for k, v in env.items() if k not in ("STEPWISE_URL", "STEPWISE_TOKEN")}
    local = stepwise("validate", "elsewhere.yml", env=offline, cwd=project)
    assert local.returncode == 0 and "no server configured, so checked here only" in local.stderr

    imported = stepwise("import", "pipeline.yml", "--team", "ml", "--json", env=env, cwd=project)
    assert imported.returncode == 0, imported.stderr
    pipeline_id = json.loads(imported.stdout)["id"]
    refused = stepwise("import", "broken.yml", "--team", "ml", env=env, cwd=project)
    assert refused.returncode == 2
    assert "job 'hello'" in refused.stderr and "broken.yml: job 'hello'" in refused.stderr

    ran = stepwise("run", "digits", "--team", "ml", "--set", "max_iter=5", "--json", env=env, cwd=project)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    # The object `manage.py pipelines run --json` prints, and only that.
    assert set(result) == {"run", "state", "url", "steps"} and result["state"] == "succeeded"
    result["id"] = result["run"]
    assert Run.objects.get(pk=result["run"]).inputs == {"max_iter": 5}
    assert set(result["steps"]) == {"prep_data", "train_model"}
    assert "train_model: succeeded" in ran.stderr
    wrong_type = stepwise("run", "digits", "--team", "ml", "--set", "max_iter=many", env=env, cwd=project)
    assert wrong_type.returncode == 2 and "--set max_iter: 'many' is not a whole number" in wrong_type.stderr
    typo = stepwise("run", "digits", "--team", "ml", "--force-step", "train_modle", env=env, cwd=project)
    assert typo.returncode == 2 and "no step named 'train_modle'" in typo.stderr
    forced = stepwise("run", "digits", "--team", "ml", "--set", "max_iter=5", "--force-step", "train_model", "--json",
                      env=env, cwd=project)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    steps = json.loads(forced.stdout)["steps"]
    assert (steps["prep_data"]["state"], steps["train_model"]["state"]) == ("reused", "succeeded")
    versions = PipelineVersion.objects.count()
    (project / "changed.yml").write_text(TWIN.replace("default: 100", "default: 200"))
    unknown = stepwise("run", "changed.yml", "--team", "ml", "--set", "epochs=3", env=env, cwd=project)
    assert unknown.returncode == 2 and "--set epochs: the pipeline has no such input" in unknown.stderr
    assert PipelineVersion.objects.count() == versions  # nothing uploaded

    failed = stepwise("run", "failing.yml", "--team", "ml", "--wait", env=env, cwd=project)
    assert failed.returncode == 1, failed.stderr
    assert "boom: failed" in failed.stderr

    runs = stepwise("runs", "--pipeline", str(pipeline_id), "--json", env=env, cwd=project)
    assert runs.returncode == 0
    assert [r["id"] for r in json.loads(runs.stdout)["runs"]] == [json.loads(forced.stdout)["run"], result["id"]]
    table = stepwise("runs", env=env, cwd=project)
    assert f"#{result['id']}" in table.stdout and "succeeded" in table.stdout

    logs = stepwise("logs", str(result["id"]), "train_model", env=env, cwd=project)
    assert (logs.returncode, logs.stdout) == (0, "training on 3 rows for 5 iterations\n")
    no_step = stepwise("logs", str(result["id"]), "nope", env=env, cwd=project)
    assert no_step.returncode == 2 and "no step 'nope'" in no_step.stderr

    ended = stepwise("cancel", str(result["id"]), env=env, cwd=project)
    assert ended.returncode == 2 and ended.stderr.strip()
    missing = stepwise("cancel", "999999", "--json", env=env, cwd=project)
    assert missing.returncode == 2 and json.loads(missing.stdout)["error"]

    out = tmp_path / "exported"
    exported = stepwise("export", "digits", "-o", str(out), env=env, cwd=project)
    assert exported.returncode == 0, exported.stderr
    assert (out / "pipeline.yml").is_file() and (out / "code" / "train_model" / "train.py").is_file()
    unknown = stepwise("export", "nothing-here", env=env, cwd=project)
    assert unknown.returncode == 2 and "no pipeline named 'nothing-here'" in unknown.stderr


def test_cli_import_and_run_without_team_use_the_only_team_the_user_may_import_into(server, token, cli_env, project):
    from pipelines_ui.models import Membership, Pipeline, Team

    alice = Membership.objects.get(team__name="ml").user
    Membership.objects.create(team=Team.objects.create(name="viewing"), user=alice, role=Role.VIEWER)
    imported = stepwise("import", "pipeline.yml", "--json", env=cli_env, cwd=project)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["team"] == "ml"  # a viewer cannot import: not a candidate
    ran = stepwise("run", "failing.yml", env=cli_env, cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert Pipeline.objects.get(name="failing").team.name == "ml"

    Membership.objects.create(team=Team.objects.create(name="nlp"), user=alice, role=Role.ADMIN)
    several = stepwise("import", "pipeline.yml", "--json", env=cli_env, cwd=project)
    assert several.returncode == 2
    assert "several teams to import into (ml, nlp): pass --team" in several.stderr
    assert "pass --team" in json.loads(several.stdout)["error"]
    refused = stepwise("run", "pipeline.yml", "--set", "max_iter=5", env=cli_env, cwd=project)
    assert refused.returncode == 2 and "(ml, nlp): pass --team" in refused.stderr
    chosen = stepwise("import", "pipeline.yml", "--team", "nlp", "--json", env=cli_env, cwd=project)
    assert chosen.returncode == 0 and json.loads(chosen.stdout)["team"] == "nlp"

    carol = make_user("carol", Team.objects.get(name="ml"), Role.VIEWER)
    viewer = {**cli_env, "STEPWISE_TOKEN": token_create(user=carol, name="cli", scopes=["read", "write"]).secret}
    none = stepwise("import", "pipeline.yml", env=viewer, cwd=project)
    assert none.returncode == 2 and "no team to import into" in none.stderr
    assert Pipeline.objects.filter(name="digits").count() == 2  # one per team that was named


USES_REGISTERED = """\
type: pipeline
name: uses-registered
inputs:
  rows:
    type: uri_folder
    path: ./src
  max_iter: {type: integer, default: 3}
jobs:
  fit:
    type: command
    component: azureml:train@latest
    inputs:
      data: ${{parent.inputs.rows}}
      max_iter: ${{parent.inputs.max_iter}}
"""


def test_components_register_list_and_resolve_in_an_imported_pipeline(server, token, cli_env, project):
    client = Client(server, token)
    registered = client.components.create(project / "train.yml", team="ml")
    assert (registered["name"], registered["version"], registered["reference"]) == ("train", "1", "azureml:train:1")
    assert client.components.create(project / "train.yml", team="ml")["id"] == registered["id"]  # same content
    assert [(c["name"], c["version"]) for c in client.components.list(team="ml")] == [("train", "1")]

    (project / "uses.yml").write_text(USES_REGISTERED)
    created = client.pipelines.create(project / "uses.yml", team="ml")  # resolved by the server, not here
    spec = client.pipelines.version(created["id"], created["version"])["spec"]
    assert spec["jobs"]["fit"]["component_name"] == "train" and spec["jobs"]["fit"]["has_code"]
    # The CLI cannot read this file alone (registered components are the server's to resolve):
    # --set is typed and checked by the inputs the server's validation reads, before any import.
    ran = stepwise("run", "uses.yml", "--team", "ml", "--set", "max_iter=7", env=cli_env, cwd=project)
    assert ran.returncode == 0, ran.stderr
    run_id = int(re.search(r"run #(\d+) ", ran.stderr).group(1))
    assert client.runs.get(run_id).data["inputs"]["max_iter"] == 7
    wrong = stepwise("run", "uses.yml", "--team", "ml", "--set", "epochs=7", env=cli_env, cwd=project)
    assert wrong.returncode == 2 and "--set epochs: the pipeline has no such input" in wrong.stderr
    # A zip of the folder too: the wrong --set leaves no pipeline behind.
    with zipfile.ZipFile(project / "bundle.zip", "w") as bundle:
        bundle.writestr("pipeline.yml", USES_REGISTERED.replace("name: uses-registered", "name: zipped"))
        for path in (project / "src").iterdir():
            bundle.write(path, path.relative_to(project))
    zipped = stepwise("run", "bundle.zip", "--team", "ml", "--set", "epochs=7", env=cli_env, cwd=project)
    assert zipped.returncode == 2 and "--set epochs: the pipeline has no such input" in zipped.stderr
    assert "zipped" not in [p["name"] for p in client.pipelines.list(team="ml")]
    zipped = stepwise("run", "bundle.zip", "--team", "ml", "--set", "max_iter=9", env=cli_env, cwd=project)
    assert zipped.returncode == 0, zipped.stderr
    assert client.runs.get(int(re.search(r"run #(\d+) ", zipped.stderr).group(1))).data["inputs"]["max_iter"] == 9
    with pytest.raises(SpecError) as local:  # read here first, so nothing goes up that cannot register
        client.components.create(project / "broken.yml", team="ml")
    assert local.value.problems[0].field == "type"
    assert client.components.list(name="broken") == []


def test_endpoints_and_schedules_through_the_client(server, project):
    from pipelines_ui.models import Team

    team = Team.objects.create(name="ops")
    boss = make_user("boss", team, Role.ADMIN)
    client = Client(server, token_create(user=boss, name="admin", scopes=["read", "run", "write", "admin"]).secret)
    created = client.pipelines.create(project / "pipeline.yml", team="ops")

    endpoint = client.endpoints.publish(team="ops", name="nightly", pipeline=created["id"])
    assert endpoint["name"] == "nightly"
    assert [e["name"] for e in client.endpoints.list()] == ["nightly"]
    first = client.endpoints.call("ops", "nightly", inputs={"max_iter": 2}, idempotency_key="k-1")
    again = client.endpoints.call("ops", "nightly", inputs={"max_iter": 2}, idempotency_key="k-1")
    assert again.id == first.id  # the same key starts nothing new
    assert first.data["inputs"] == {"max_iter": 2}
    with pytest.raises(ValidationError) as info:
        client.endpoints.call("ops", "nightly", inputs={"max_iter": "many"})
    assert [e["field"] for e in info.value.errors] == ["inputs.max_iter"]

    schedule = client.schedules.create(team="ops", name="hourly", pipeline=created["id"], cron="0 * * * *")
    assert client.schedules.pause(schedule["id"])["enabled"] is False
    assert [s["name"] for s in client.schedules.list()] == ["hourly"]
    client.schedules.delete(schedule["id"])
    assert client.schedules.list() == []

    # A team secret: set (twice: the second replaces), listed by name only, deleted.
    assert client.secrets.set("ops", "registry_token", "tok-1234567")["name"] == "registry_token"
    assert client.secrets.set("ops", "registry_token", "tok-7654321")["updated_by"] == "boss"
    listed = client.secrets.list("ops")
    assert [s["name"] for s in listed] == ["registry_token"] and "tok-" not in json.dumps(listed)
    with pytest.raises(ValidationError) as info:
        client.secrets.set("ops", "not-a-name", "x")
    assert [e["field"] for e in info.value.errors] == ["name"]
    client.secrets.delete("ops", "registry_token")
    assert client.secrets.list("ops") == []
    with pytest.raises(NotFound):
        client.secrets.list("nobody's")
