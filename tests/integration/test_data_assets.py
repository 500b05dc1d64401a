"""A pipeline reading `azureml:NAME@latest`: a new data version reruns exactly the steps that read it."""

from __future__ import annotations

import pytest

from pipelines_ui.api import data_triggers
from runs import services
from runs.data_assets import data_create_from_path
from runs.models import DataAsset, DataVersion, RunDataInput, RunRemoteInput, RunState, StepState
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run
from tests.runs.test_remote_inputs import serve

pytestmark = pytest.mark.integration

# `reader` reads the asset, `after` depends on reader, `other` reads nothing of it.
YAML = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: "azureml:digits@latest"}
  pinned: {type: uri_file, path: "azureml:notes:1"}
jobs:
  reader:
    command: >-
      python -c "import pathlib, sys; t = pathlib.Path(sys.argv[1], 'value.txt').read_text();
      print('read', t); pathlib.Path(sys.argv[2], 'v.txt').write_text(t)"
      ${{inputs.data}} ${{outputs.out}}
    inputs: {data: "${{parent.inputs.raw}}"}
    outputs: {out: {type: uri_folder}}
  after:
    command: >-
      python -c "import pathlib, sys; print('after', pathlib.Path(sys.argv[1], 'v.txt').read_text())"
      ${{inputs.x}}
    inputs: {x: "${{parent.jobs.reader.outputs.out}}"}
  other:
    command: python -c "import sys; print('notes', open(sys.argv[1]).read())" ${{inputs.n}}
    inputs: {n: "${{parent.inputs.pinned}}"}
"""


def executed(run):
    return {name for name, s in steps_of(run).items() if s.state == StepState.SUCCEEDED}


def test_new_version_behind_latest_reruns_exactly_its_readers(workers, alice, team, tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "value.txt").write_text("one")
    (tmp_path / "notes.txt").write_text("hello")
    v1 = data_create_from_path(team=team, name="digits", path=tmp_path / "v1", user=alice)
    data_create_from_path(team=team, name="notes", path=tmp_path / "notes.txt", type_="uri_file", user=alice)
    workers.start(1)
    version = import_yaml(tmp_path, YAML, alice, team)

    first = wait_run(services.run_create(version=version, user=alice))
    assert first.state == RunState.SUCCEEDED, workers.logs()
    assert executed(first) == {"reader", "after", "other"}
    assert "read one" in log_text(steps_of(first)["reader"])
    assert "notes hello" in log_text(steps_of(first)["other"])
    assert RunDataInput.objects.get(run=first, name="raw").data_version == v1

    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "value.txt").write_text("two")
    v2 = data_create_from_path(team=team, name="digits", path=tmp_path / "v2", user=alice)
    assert v2.version == "2"

    second = wait_run(services.run_create(version=version, user=alice))
    assert second.state == RunState.SUCCEEDED, workers.logs()
    assert executed(second) == {"reader", "after"}
    assert steps_of(second)["other"].state == StepState.REUSED
    assert "after two" in log_text(steps_of(second)["after"])
    assert RunDataInput.objects.get(run=second, name="raw").data_version == v2

    # A rerun of the first run reads the version that run recorded, so everything is reused.
    again = wait_run(services.run_rerun(run=first, user=alice))
    assert again.state == RunState.SUCCEEDED
    assert RunDataInput.objects.get(run=again, name="raw").data_version == v1
    assert {s.state for s in steps_of(again).values()} == {StepState.REUSED}


NAMED_OUTPUT = """
type: pipeline
inputs:
  n: {type: integer, default: 1}
jobs:
  make:
    command: >-
      python -c "import pathlib, sys; pathlib.Path(sys.argv[2], 'n.txt').write_text(sys.argv[1])"
      ${{inputs.n}} ${{outputs.out}}
    inputs: {n: "${{parent.inputs.n}}"}
    outputs:
      out: {type: uri_folder, name: made}
"""


def test_outputs_name_registers_the_output_as_data(workers, alice, team, tmp_path):
    workers.start(1)
    version = import_yaml(tmp_path, NAMED_OUTPUT, alice, team)
    first = wait_run(services.run_create(version=version, user=alice))
    assert first.state == RunState.SUCCEEDED, workers.logs()
    made = DataVersion.objects.get(asset__name="made")
    assert made.version == "1" and made.step_output.step_run.run == first
    # Reused with the same content: no second version; new content: version 2.
    again = wait_run(services.run_create(version=version, user=alice))
    assert steps_of(again)["make"].state == StepState.REUSED
    assert DataVersion.objects.filter(asset__name="made").count() == 1
    third = wait_run(services.run_create(version=version, user=alice, inputs={"n": "2"}))
    assert third.state == RunState.SUCCEEDED
    latest = DataVersion.objects.filter(asset__name="made").order_by("-seq").first()
    assert latest.version == "2" and latest.step_output.step_run.run == third


WEB = """
type: pipeline
inputs:
  web: {{type: uri_file, path: "{url}"}}
jobs:
  reader:
    command: python -c "import sys; print('web', open(sys.argv[1]).read())" ${{{{inputs.f}}}}
    inputs: {{f: "${{{{parent.inputs.web}}}}"}}
  other:
    command: python -c "print('other')"
"""


@pytest.fixture
def site(settings):
    yield from serve(settings)


def test_a_changed_web_file_reruns_exactly_its_reader(workers, alice, team, tmp_path, site):
    site.files["/value.txt"] = b"one"
    workers.start(1)
    version = import_yaml(tmp_path, WEB.format(url=f"{site.base}/value.txt"), alice, team)

    first = wait_run(services.run_create(version=version, user=alice))
    assert first.state == RunState.SUCCEEDED, workers.logs()
    assert executed(first) == {"reader", "other"}
    assert "web one" in log_text(steps_of(first)["reader"])

    site.files["/value.txt"] = b"two"
    second = wait_run(services.run_create(version=version, user=alice))
    assert second.state == RunState.SUCCEEDED, workers.logs()
    assert executed(second) == {"reader"} and steps_of(second)["other"].state == StepState.REUSED
    assert "web two" in log_text(steps_of(second)["reader"])

    # A rerun of the first run reads the bytes that run recorded: nothing executes.
    again = wait_run(services.run_rerun(run=first, user=alice))
    assert again.state == RunState.SUCCEEDED
    assert {s.state for s in steps_of(again).values()} == {StepState.REUSED}
    assert RunRemoteInput.objects.get(run=again).sha256 == RunRemoteInput.objects.get(run=first).sha256


TRIGGERED = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: "azureml:digits@latest"}
jobs:
  reader:
    command: >-
      python -c "import pathlib, sys; print('read', pathlib.Path(sys.argv[1], 'value.txt').read_text())"
      ${{inputs.d}}
    inputs: {d: "${{parent.inputs.raw}}"}
"""


def test_registering_version_2_runs_the_triggered_pipeline_on_it(workers, alice, team, tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "value.txt").write_text("one")
    data_create_from_path(team=team, name="digits", path=tmp_path / "v1", user=alice)
    workers.start(1)
    version = import_yaml(tmp_path, TRIGGERED, alice, team)
    trigger = data_triggers.data_trigger_create(
        team=team,
        settings=data_triggers.TriggerSettings(
            name="on digits", pipeline=version.pipeline, input_name="raw", asset=DataAsset.objects.get(name="digits")
        ),
        user=alice,
    )
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "value.txt").write_text("two")
    v2 = data_create_from_path(team=team, name="digits", path=tmp_path / "v2", user=alice)

    fire = trigger.fires.get()
    run = wait_run(fire.run)
    assert run.state == RunState.SUCCEEDED, workers.logs()
    assert "read two" in log_text(steps_of(run)["reader"])
    assert RunDataInput.objects.get(run=run, name="raw").data_version == v2
    assert version.pipeline.runs.count() == 1
