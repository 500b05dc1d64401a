"""The stepwise package installs from a checkout into a fresh virtual environment with its own
dependencies only (no Django, nothing of the server) and does its work there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib.util, json, sys
from pathlib import Path

import stepwise, stepwise.dag, stepwise.spec, stepwise.states
from stepwise import log_metric
from stepwise.spec import SpecError, load_pipeline

example, broken = Path(sys.argv[1]), Path(sys.argv[2])
p, _warnings = load_pipeline(example / "pipeline.yml")
upstream = p.upstream()
states = {name: stepwise.states.StepState.PENDING for name in p.jobs}
try:
    load_pipeline(broken)
    error = None
except SpecError as exc:
    error = str(exc)
log_metric("loss", 0.5)
print(json.dumps({
    "package": stepwise.__file__,
    "jobs": sorted(p.jobs),
    "ready": sorted(stepwise.dag.ready_steps(upstream, states)),
    "node": stepwise.dag.node_ids(p)["make_numbers"],
    "dot": stepwise.dag.pipeline_dot(p).startswith("digraph"),
    "error": error,
    "django": importlib.util.find_spec("django") is not None,
    "server": sorted(m for m in sys.modules if m.split(".")[0] in ("django", "runs", "pipelines_ui")),
}))
"""

BROKEN = """
type: pipeline
jobs:
  train:
    type: command
    command: python train.py
    inputs:
      epochs: ${{parent.inputs.missing}}
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with `pip install <checkout>`, built from a copy of the package's
    files so that the build leaves nothing (build/, *.egg-info) in the checkout."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "stepwise", source / "stepwise", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    subprocess.run([_base_python(), "-m", "venv", str(env_dir)], check=True, timeout=120)
    result = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return env_dir


def _base_python() -> str:
    """The interpreter behind the test's virtual environment, so the new one holds none of its packages."""
    for name in (f"python{sys.version_info.major}.{sys.version_info.minor}", "python3"):
        candidate = Path(sys.base_prefix) / "bin" / name
        if candidate.exists():
            return str(candidate)
    return sys.executable


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
    env.pop("STEPWISE_METRICS_FILE", None)
    return env


def test_the_package_works_without_django_or_the_server(venv, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", PROBE, str(ROOT / "examples" / "diamond"), str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed copy is the one imported
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.strip().splitlines()
    found = json.loads(last)
    assert Path(found["package"]).is_relative_to(venv), found["package"]
    assert found["django"] is False and found["server"] == []
    assert found["jobs"] == ["combine", "double", "make_numbers", "square"]
    assert found["ready"] == ["make_numbers"]
    assert found["node"] == "step-make_numbers" and found["dot"] is True
    # Validation names the file, the job and the field, as on the server.
    assert found["error"].startswith(f"{broken}:"), found["error"]
    assert "job 'train'" in found["error"] and "field 'inputs.epochs'" in found["error"], found["error"]
    # Outside a step the helper prints what it would have logged.
    assert printed == ["metric loss=0.5 (step 0)"]


def test_the_stepwise_command_is_installed(venv):
    result = subprocess.run(
        [str(venv / "bin" / "stepwise"), "--help"], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert "usage: stepwise" in result.stdout
