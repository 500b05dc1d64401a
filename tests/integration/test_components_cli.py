"""`pipelines component register` as a subprocess, and a pipeline using `azureml:train@latest` run by real workers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines_ui.models import Component, Pipeline
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

TRAIN = """\
    $schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
    type: command
    name: train
    version: 1
    display_name: Train
    inputs:
      data: {type: uri_folder}
      epochs: {type: integer, default: 2}
    outputs:
      model: {type: uri_folder}
    code: ./src
    command: python train.py --data ${{inputs.data}} --epochs ${{inputs.epochs}} --model ${{outputs.model}}
"""

TRAIN_PY = """\
    import argparse, pathlib
    p = argparse.ArgumentParser()
    p.add_argument("--data"); p.add_argument("--epochs", type=int); p.add_argument("--model")
    a = p.parse_args()
    rows = (pathlib.Path(a.data) / "rows.csv").read_text().splitlines()
    (pathlib.Path(a.model) / "model.txt").write_text(f"{len(rows)} rows, {a.epochs} epochs")
    print("trained")
"""

PIPELINE = """\
    type: pipeline
    display_name: uses-train
    jobs:
      fit:
        component: azureml:train@latest
        inputs:
          data: {type: uri_folder, path: ./data}
          epochs: 3
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "pipelines", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_register_validate_import_and_run_a_registered_component(workers, alice, team, tmp_path):
    alice.is_superuser = True
    alice.save()
    env = workers.env()
    write(tmp_path / "component", {"train.yml": TRAIN, "src/train.py": TRAIN_PY})
    write(tmp_path / "pipeline", {"pipeline.yml": PIPELINE, "data/rows.csv": "a,b\n1,2\n3,4\n"})
    pipeline_yml = str(tmp_path / "pipeline" / "pipeline.yml")

    before = cli("validate", pipeline_yml, "--team", team.name, env=env)
    assert before.returncode == 2
    assert "job 'fit': field 'component': component 'train' is not registered (team Data Science)" in before.stderr
    assert "pipeline.yml" in before.stderr
    assert cli("import", pipeline_yml, "--team", team.name, env=env).returncode == 2
    assert not Pipeline.objects.exists()

    registered = cli("component", "register", str(tmp_path / "component" / "train.yml"), "--team", team.name, env=env)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "registered component train version 1 in team Data Science"
    again = cli("component", "register", str(tmp_path / "component" / "train.yml"), "--team", team.name, env=env)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert Component.objects.get().files.keys() == {"train.py"}

    after = cli("validate", pipeline_yml, "--team", team.name, env=env)
    assert after.returncode == 0, after.stderr
    assert "valid pipeline with 1 steps" in after.stdout
    imported = cli("import", pipeline_yml, "--team", team.name, env=env)
    assert imported.returncode == 0, imported.stderr

    workers.start(1)
    result = cli("run", pipeline_yml, "--team", team.name, "--wait", "--json", env=env)
    assert result.returncode == 0, result.stderr + workers.logs()
    summary = json.loads(result.stdout)
    assert summary["state"] == "succeeded"
    fit = summary["steps"]["fit"]
    assert Path(fit["outputs"]["model"], "model.txt").read_text() == "3 rows, 3 epochs"
    step = Pipeline.objects.get().latest_version.spec["jobs"]["fit"]
    assert (step["component_name"], step["component_version"]) == ("train", "1")


def test_register_refuses_bad_files_and_changed_versions(workers, alice, team, other_team, tmp_path):
    alice.is_superuser = True
    alice.save()
    env = workers.env()
    write(tmp_path, {"train.yml": TRAIN, "src/train.py": TRAIN_PY, "bad.yml": "type: command\ncommand: 7\n"})

    bad = cli("component", "register", str(tmp_path / "bad.yml"), "--team", team.name, env=env)
    assert bad.returncode == 2
    assert "bad.yml:2: field 'command': command must be a string" in bad.stderr

    missing = cli("component", "register", str(tmp_path / "nope.yml"), "--team", team.name, env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    no_team = cli("component", "register", str(tmp_path / "train.yml"), "--team", "Nobody", env=env)
    assert no_team.returncode == 2 and "no team named 'Nobody'" in no_team.stderr

    ok = cli(
        "component", "register", str(tmp_path / "train.yml"), "--team", team.name, "--visibility", "instance", env=env
    )
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "src" / "train.py").write_text("print('changed')\n")
    changed = cli("component", "register", str(tmp_path / "train.yml"), "--team", team.name, env=env)
    assert changed.returncode == 2
    assert "'train' version '1' is already registered in team Data Science with other content" in changed.stderr
    bumped = cli("component", "register", str(tmp_path / "train.yml"), "--team", team.name, "--version", "2", env=env)
    assert bumped.returncode == 0 and "version 2" in bumped.stdout
    assert list(Component.objects.order_by("version").values_list("version", flat=True)) == ["1", "2"]

    listed = cli("component", "list", env=env)
    assert listed.returncode == 0 and "train:1\tinstance" in listed.stdout and "train:2\tteam" in listed.stdout

    # A pipeline in another team sees the instance-wide version only (train:2 is team-only there).
    write(tmp_path / "p", {"pipeline.yml": PIPELINE.replace("@latest", ":2"), "data/rows.csv": "a\n"})
    other = cli("validate", str(tmp_path / "p" / "pipeline.yml"), "--team", other_team.name, env=env)
    assert other.returncode == 2 and "component 'train' has no version '2' (versions: 1)" in other.stderr
