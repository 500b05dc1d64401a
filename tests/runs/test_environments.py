"""Steps whose environment has a conda file run in a virtual environment built once per host
(runs/environments.py), executed in-process against a sandboxed target; packages come from
wheels built in the test's folder, never an index."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from runs import environments, executor
from runs.models import ComputeTarget, RunState, StepRun, StepState
from runs.services import run_cancel, run_create
from tests.integration.test_execution import import_yaml
from tests.wheels import make_wheel

PIPELINE = """
type: pipeline
jobs:
  use:
    type: command
    command: >-
      python -c "import os, sys, tinypkg; print('VALUE', tinypkg.VALUE, os.environ['VIRTUAL_ENV'] == sys.prefix)"
    environment:
      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
      conda_file:
        channels: [conda-forge]
        dependencies:
          - python=PYTHON
          - pip
          - pip:
              - --no-index
              - --find-links WHEELS
              - REQUIREMENT
"""


@pytest.fixture(autouse=True)
def target(settings, tmp_path, transactional_db) -> ComputeTarget:
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    settings.STEPWISE_ENVS_CACHE = tmp_path / "envs"
    settings.STEPWISE_ENV_PACKAGE_DIRS = [tmp_path / "wheels"]
    # No worker serves this queue: the test runs the steps itself. Sandboxed, as `make run` makes it.
    ComputeTarget.objects.all().delete()
    return ComputeTarget.objects.create(name="local", queue=f"test-{uuid.uuid4().hex[:8]}", is_default=True)


@pytest.fixture
def wheels(tmp_path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "tinypkg", "0.1", 'VALUE = "tiny-ok"\n')
    return folder


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The digests of the environments built, in order."""
    built: list[str] = []
    build = environments._build

    def counting(plan, folder, **kwargs):
        built.append(plan.digest)
        return build(plan, folder, **kwargs)

    monkeypatch.setattr(environments, "_build", counting)
    return built


@pytest.fixture(params=["uv", "pip"])
def installer(request, monkeypatch) -> str:
    """Each installer a worker may build with: uv (pinned in requirements.txt), and pip where a
    worker has no uv."""
    if request.param == "pip":
        monkeypatch.setattr(environments, "uv_binary", lambda: None)
    else:
        assert environments.uv_binary(), "uv is in requirements.txt"
    return request.param


def python_pin() -> str:
    import sys

    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def pipeline_text(wheels: Path, requirement: str = "tinypkg==0.1", python: str | None = None) -> str:
    return (
        PIPELINE.replace("WHEELS", str(wheels))
        .replace("REQUIREMENT", requirement)
        .replace("PYTHON", python or python_pin())
    )


def run_step(version, user) -> StepRun:
    run = run_create(version=version, user=user, force_rerun=True)
    step = StepRun.objects.get(run=run, name="use")
    executor.execute(step.pk, step.attempt)
    step.refresh_from_db()
    return step


def log_of(step: StepRun) -> str:
    return "\n".join(chunk.text for chunk in step.log_chunks.all())


def test_a_conda_file_is_installed_once_and_reused(alice, team, tmp_path, wheels, builds, installer):
    version = import_yaml(tmp_path, pipeline_text(wheels), alice, team)

    first = run_step(version, alice)
    assert first.state == StepState.SUCCEEDED, first.reason
    log = log_of(first)
    assert "VALUE tiny-ok True" in log
    assert "[environment] building a virtual environment" in log and f" with {installer}" in log
    assert "[environment] environment ready" in log
    assert len(builds) == 1
    assert (Path(tmp_path / "envs" / builds[0]) / environments.MARKER).is_file()

    second = run_step(version, alice)
    assert second.state == StepState.SUCCEEDED, second.reason
    assert "VALUE tiny-ok True" in log_of(second)
    assert "[environment] building" not in log_of(second)
    assert len(builds) == 1


def test_another_package_list_is_another_environment(alice, team, tmp_path, wheels, builds):
    make_wheel(wheels, "tinypkg", "0.2", 'VALUE = "tiny-two"\n')
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    assert run_step(import_yaml(tmp_path, pipeline_text(wheels), alice, team, name="a"), alice).state == "succeeded"
    two = run_step(import_yaml(tmp_path, pipeline_text(wheels, "tinypkg==0.2"), alice, team, name="b"), alice)
    assert "VALUE tiny-two True" in log_of(two)
    assert len(set(builds)) == 2


def test_a_package_that_cannot_be_had_fails_the_step_clearly(alice, team, tmp_path, wheels, builds, installer):
    version = import_yaml(tmp_path, pipeline_text(wheels, "no-such-package-stepwise==1.0"), alice, team)
    step = run_step(version, alice)
    assert step.state == StepState.FAILED
    assert step.run.state == RunState.FAILED
    assert step.reason.startswith("could not build the step's environment: could not install the environment's")
    assert "no-such-package-stepwise" in step.reason
    assert "Traceback" not in step.reason and "Traceback" not in log_of(step)
    # The installer's own words are in the step's log, and nothing half-built is kept.
    assert "[environment] " in log_of(step)
    assert not (tmp_path / "envs" / builds[0]).exists()


@pytest.mark.parametrize("line", ["--find-links /etc", "tinypkg @ file:///etc/tinypkg-0.1-py3-none-any.whl"])
def test_local_paths_outside_the_package_folders_are_refused(alice, team, tmp_path, wheels, line, builds):
    text = pipeline_text(wheels).replace(f"--find-links {wheels}", line)
    step = run_step(import_yaml(tmp_path, text, alice, team), alice)
    assert step.state == StepState.FAILED
    assert "is not in a folder this worker installs packages from (STEPWISE_ENV_PACKAGE_DIRS: " in step.reason
    assert builds == []


def test_a_python_this_worker_lacks_fails_the_step_naming_it(alice, team, tmp_path, wheels):
    version = import_yaml(tmp_path, pipeline_text(wheels, python="3.99"), alice, team)
    step = run_step(version, alice)
    assert step.state == StepState.FAILED
    assert "asks for python 3.99, which is not installed on this worker (it has " in step.reason
    assert python_pin() in step.reason


def test_an_image_only_environment_runs_in_the_targets_environment_with_a_warning(alice, team, tmp_path):
    text = """
    type: pipeline
    jobs:
      use:
        type: command
        command: python -c "import os; print('venv', os.environ.get('VIRTUAL_ENV'))"
        environment: {image: 'python:3.11-slim'}
    """
    step = run_step(import_yaml(tmp_path, text, alice, team), alice)
    assert step.state == StepState.SUCCEEDED, step.reason
    log = log_of(step)
    assert "warning: the environment's image python:3.11-slim is not pulled" in log
    assert "venv None" in log


def test_two_builders_of_one_environment_build_it_once(settings, tmp_path, monkeypatch):
    settings.STEPWISE_ENVS_CACHE = tmp_path / "envs"
    plan = environments.plan({"conda_file": {"dependencies": ["pip", {"pip": ["tinypkg==0.1"]}]}})
    assert plan is not None
    inside = threading.Event()
    release = threading.Event()
    built: list[Path] = []

    def slow_build(plan, folder, **kwargs):
        built.append(folder)
        inside.set()
        # Held until the other builder is waiting on the lock.
        release.wait(timeout=30)
        folder.mkdir(parents=True)

    monkeypatch.setattr(environments, "_build", slow_build)
    results: list[Path] = []
    waiting: list[str] = []

    def build(log):
        results.append(environments.ensure(plan, log=log, tick=lambda: None))

    first = threading.Thread(target=build, args=(lambda lines: None,))
    first.start()
    assert inside.wait(timeout=30)
    second = threading.Thread(target=build, args=(lambda lines: (waiting.extend(lines), release.set()),))
    second.start()
    first.join(timeout=30)
    second.join(timeout=30)
    assert built == [plan.folder]
    assert results == [plan.folder, plan.folder]
    assert any("another step on this host is building this environment" in line for line in waiting)


@pytest.mark.parametrize(
    ("spec", "version", "expected"),
    [
        ("", "3.11.7", True),
        ("=3.11", "3.11.7", True),
        ("=3.1", "3.11.7", False),
        ("==3.11.7", "3.11.7", True),
        ("3.11.*", "3.11.7", True),
        ("=3.10", "3.11.7", False),
        (">=3.8,<3.12", "3.11.7", True),
        (">=3.12", "3.11.7", False),
    ],
)
def test_conda_python_specs(spec, version, expected):
    assert environments.version_matches(spec, version) is expected


def test_a_bad_python_spec_is_a_clear_error():
    with pytest.raises(environments.EnvironmentBuildError, match="is not a version spec"):
        environments.version_matches(">=three", "3.11.7")


def test_the_key_is_the_normalized_content():
    a = environments.plan({"image": "x", "conda_file": {"name": "a", "dependencies": ["pip", {"pip": ["p==1"]}]}})
    b = environments.plan({"conda_file": {"name": "b", "channels": ["c"], "dependencies": [{"pip": ["p==1"]}]}})
    c = environments.plan({"conda_file": {"dependencies": [{"pip": ["p==2"]}]}})
    assert a is not None and b is not None and c is not None
    assert a.digest == b.digest != c.digest


def test_a_stalled_build_is_stopped_at_its_limit(settings, tmp_path):
    settings.STEPWISE_ENVS_CACHE = tmp_path / "envs"
    settings.STEPWISE_ENV_BUILD_TIMEOUT_S = 0
    ticks: list[int] = []
    with pytest.raises(environments.EnvironmentBuildError, match=r"could not install: no result after 0 s"):
        environments._run(["sleep", "60"], "could not install", log=lambda lines: None, tick=lambda: ticks.append(1))


def test_a_step_canceled_while_its_environment_builds_never_starts(alice, team, tmp_path, wheels, monkeypatch):
    run = run_create(version=import_yaml(tmp_path, pipeline_text(wheels), alice, team), user=alice)
    step = StepRun.objects.get(run=run, name="use")
    build = environments._build

    def canceled_meanwhile(plan, folder, *, log, tick):
        run_cancel(run=run)
        tick()
        return build(plan, folder, log=log, tick=tick)

    monkeypatch.setattr(environments, "_build", canceled_meanwhile)
    assert executor.execute(step.pk, step.attempt) == "superseded or canceled while its environment was built"
    step.refresh_from_db()
    assert step.state == StepState.CANCELED


def test_a_conda_package_is_installed_from_pypi_and_a_system_library_left_to_the_host(
    alice, team, tmp_path, wheels, builds
):
    # As Azure ML conda files often write it: the package under conda's dependencies, not pip's.
    text = pipeline_text(wheels, requirement="--prefer-binary").replace(
        "          - pip\n", "          - tinypkg=0.1\n          - cudatoolkit=11.8\n          - pip\n"
    )
    version = import_yaml(tmp_path, text, alice, team)

    step = run_step(version, alice)

    log = log_of(step)
    assert step.state == StepState.SUCCEEDED, (step.reason, log)
    assert "VALUE tiny-ok True" in log
    assert "[environment] conda packages installed from PyPI: tinypkg=0.1 as tinypkg==0.1.*" in log
    assert "[environment] cudatoolkit=11.8: not installed (libraries of the system" in log
    assert len(builds) == 1


# ---- named environments a compute target defines -----------------------------------------------

NAMED = """
type: pipeline
jobs:
  use:
    type: command
    command: >-
      python -c "import os, sys, tinypkg; print('VALUE', tinypkg.VALUE, os.environ['VIRTUAL_ENV'] == sys.prefix)"
    environment: ENVIRONMENT
"""


def tiny_definition(wheels: Path, requirement: str = "tinypkg==0.1") -> dict:
    return {"dependencies": [f"python={python_pin()}", {"pip": ["--no-index", f"--find-links {wheels}", requirement]}]}


@pytest.mark.parametrize(
    "reference",
    [
        "azureml:tiny-env@latest",
        "azureml:tiny-env:3",
        "azureml://registries/azureml/environments/tiny-env/labels/latest",
        "tiny-env",
    ],
)
def test_a_named_environment_the_target_defines_is_built_from_its_definition(
    alice, team, tmp_path, wheels, target, reference
):
    """As Azure ML's components name registered and curated environments: built as the target defines the name."""
    target.environments = {"tiny-env": tiny_definition(wheels)}
    target.full_clean()
    target.save()
    version = import_yaml(tmp_path, NAMED.replace("ENVIRONMENT", f'"{reference}"'), alice, team)
    step = run_step(version, alice)
    assert step.state == StepState.SUCCEEDED, (step.reason, log_of(step))
    log = log_of(step)
    assert "VALUE tiny-ok True" in log
    assert f"{reference} is built as compute target local (tiny-env) defines it" in log


def test_an_exact_version_is_defined_apart_and_other_names_run_in_the_targets_python(
    alice, team, tmp_path, wheels, target
):
    make_wheel(wheels, "tinypkg", "0.2", 'VALUE = "tiny-two"\n')
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    target.environments = {"tiny-env": tiny_definition(wheels), "tiny-env:2": tiny_definition(wheels, "tinypkg==0.2")}
    target.save()
    two = run_step(import_yaml(tmp_path / "a", NAMED.replace("ENVIRONMENT", "azureml:tiny-env:2"), alice, team), alice)
    assert "VALUE tiny-two True" in log_of(two), log_of(two)
    other = run_step(
        import_yaml(tmp_path / "b", NAMED.replace("ENVIRONMENT", "azureml:other@latest"), alice, team), alice
    )
    # Not defined: the target's own Python, which has no tinypkg; the log says why.
    assert other.state == StepState.FAILED and "No module named 'tinypkg'" in log_of(other)
    assert "azureml:other@latest: no definition of this name on the step's compute target" in log_of(other)


def test_a_changed_definition_changes_the_fingerprint_and_reruns_the_step(alice, team, tmp_path, wheels, target):
    version = import_yaml(tmp_path, NAMED.replace("ENVIRONMENT", "azureml:tiny-env@latest"), alice, team)
    plain = run_create(version=version, user=alice).steps.get(name="use")
    assert plain.fingerprint_parts["environment"] == "azureml:tiny-env@latest"
    target.environments = {"tiny-env": tiny_definition(wheels)}
    target.save()
    defined = run_create(version=version, user=alice).steps.get(name="use")
    assert defined.fingerprint_parts["environment"]["conda_file"] == tiny_definition(wheels)
    target.environments = {"tiny-env": tiny_definition(wheels, "tinypkg==0.2")}
    target.save()
    changed = run_create(version=version, user=alice).steps.get(name="use")
    assert len({plain.fingerprint, defined.fingerprint, changed.fingerprint}) == 3


@pytest.mark.parametrize(
    ("definitions", "message"),
    [
        ([], "a mapping of environment names"),
        ({"azureml:x": {"dependencies": []}}, "is not an environment name"),
        ({"x": "numpy"}, "give the content of a conda file"),
        ({"x": {"dependencies": [{"pip": ["-r other.txt"]}]}}, "x: "),
    ],
)
def test_a_bad_definition_is_refused_by_the_form_naming_it(target, definitions, message):
    from django.core.exceptions import ValidationError

    target.environments = definitions
    with pytest.raises(ValidationError) as refused:
        target.full_clean()
    assert any(message in problem for problem in refused.value.message_dict["environments"])
