"""The model registry: creating versions, metrics copied from the producing run, immutability,
archive, and `mlflow_model`/`custom_model` inputs resolved when a run is created."""

from __future__ import annotations

import io
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from django.db.models import ProtectedError

from runs import artifacts
from runs.data_assets import DataError
from runs.models import Artifact, Metric, Param, StepOutput, StepState
from runs.registry import services
from runs.registry.models import Deployment, ModelVersion, RunModelInput
from runs.services import RunInputError, run_create, run_rerun
from stepwise.spec import SpecError, from_json, parse_text, to_json, yaml_files
from tests.runs.conftest import make_pipeline, set_step

pytestmark = pytest.mark.django_db

READER = """
type: pipeline
inputs:
  clf: {{type: {flavour}, path: "{ref}"}}
jobs:
  score:
    command: ls ${{{{inputs.m}}}}
    inputs: {{m: "${{{{parent.inputs.clf}}}}"}}
"""


def model_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


@pytest.fixture
def clf(team, alice, tmp_path) -> ModelVersion:
    return services.model_create_from_path(
        team=team, name="clf", path=model_file(tmp_path, "m1.pkl", "one"), user=alice
    )


def test_versions_number_themselves_and_store_content_hashed_files(team, tmp_path, clf):
    assert (clf.version, clf.flavour, clf.file_count, clf.source) == ("1", "custom_model", 1, "path")
    assert artifacts.artifact_intact(clf.artifact, verify_content=True)
    named = services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "b", "two"), version="v2")
    after = services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "c", "three"))
    assert (named.version, after.version) == ("v2", "2")
    with pytest.raises(DataError, match="already has a version 1"):
        services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "d", "x"), version="1")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "../up"}, "invalid model name"),
        ({"version": "latest"}, "invalid version"),
        ({"flavour": "onnx"}, "unknown model flavour"),
    ],
)
def test_bad_input_is_named(team, tmp_path, kwargs, message):
    args = {"team": team, "name": "ok", "path": model_file(tmp_path, "m", "m"), **kwargs}
    with pytest.raises(DataError, match=message):
        services.model_create_from_path(**args)
    assert not ModelVersion.objects.exists()


def test_a_version_is_immutable_and_archived_not_deleted_once_read(team, alice, clf):
    clf.flavour = "mlflow_model"
    with pytest.raises(ValueError, match="immutable"):
        clf.save()
    clf.refresh_from_db()
    clf.description = "better words"
    clf.save(update_fields=["description"])
    pipeline = make_pipeline(
        team, alice, name="reader", yaml_text=READER.format(flavour="custom_model", ref="azureml:clf:1")
    )
    run_create(version=pipeline.latest_version, user=alice)
    with pytest.raises(DataError, match="archive it instead"):
        services.model_version_delete(version=clf)
    with pytest.raises(ProtectedError):
        clf.delete()
    services.model_archive(version=clf)
    clf.refresh_from_db()
    assert clf.archived


def test_register_a_step_output_copies_the_runs_metrics_and_params(run, tmp_path, alice):
    artifact = artifacts.store_output(model_file(tmp_path, "model.pkl", "m"), Artifact.Kind.FILE)
    train = set_step(run, "train", state=StepState.SUCCEEDED)
    prep = set_step(run, "prep", state=StepState.SUCCEEDED)
    Metric.objects.create(step_run=train, name="accuracy", value=0.5, step=0)
    Metric.objects.create(step_run=train, name="accuracy", value=0.9, step=1)
    Metric.objects.create(step_run=prep, name="accuracy", value=0.1, step=5)
    Metric.objects.create(step_run=prep, name="rows", value=100)
    Param.objects.create(step_run=train, name="C", value="1.0")
    output = StepOutput.objects.create(step_run=train, name="model", artifact=artifact)
    version = services.model_create_from_step_output(step_output=output, name="digits-clf", user=alice)
    version.refresh_from_db()
    assert version.artifact == artifact and version.step_output == output
    # The producing step's last value wins over another step's metric of the same name.
    assert version.metrics == {"accuracy": 0.9, "rows": 100.0}
    assert version.params == {"C": "1.0"}
    # Copied: the numbers outlive the run.
    run.delete()
    version.refresh_from_db()
    assert version.metrics["accuracy"] == 0.9 and version.step_output is None


def _loaded_as_before(step_output: StepOutput) -> dict[str, float]:
    """What run_metrics_params kept when it read every row: a dict filled in (step, id) order,
    other steps first, then the producing step's."""
    metrics: dict[str, float] = {}
    step_run = step_output.step_run
    for m in Metric.objects.filter(step_run__run=step_run.run).exclude(step_run=step_run).order_by("step", "id"):
        metrics[m.name] = m.value
    for m in Metric.objects.filter(step_run=step_run).order_by("step", "id"):
        metrics[m.name] = m.value
    return metrics


def test_the_run_s_last_metric_values_are_worked_out_in_the_database(run, tmp_path):
    artifact = artifacts.store_output(model_file(tmp_path, "model.pkl", "m"), Artifact.Kind.FILE)
    train = set_step(run, "train", state=StepState.SUCCEEDED)
    prep = set_step(run, "prep", state=StepState.SUCCEEDED)
    rows = [
        # A higher step logged earlier beats a lower step logged later; a repeated step, the later row.
        (train, "loss", 3, 0.3),
        (train, "loss", 1, 0.9),
        (train, "loss", 3, 0.25),
        (prep, "loss", 9, 7.0),  # another step's: the producing step's value wins
        (prep, "rows", 0, 100.0),
        (prep, "rows", -2, 50.0),
        (train, "acc", -1, 0.5),
        (prep, "zeta", 4, 1.0),
        (train, "zeta", 2, 2.0),
        (prep, "only_prep", 7, 3.0),
        (prep, "only_prep", 7, 4.0),
    ]
    Metric.objects.bulk_create(Metric(step_run=s, name=n, step=i, value=v) for s, n, i, v in rows)
    output = StepOutput.objects.create(step_run=train, name="model", artifact=artifact)
    with mock.patch.object(Metric, "from_db", side_effect=AssertionError("a Metric row loaded into Python")):
        metrics, _ = services.run_metrics_params(output)
    expected = {"rows": 100.0, "zeta": 2.0, "only_prep": 4.0, "loss": 0.25, "acc": 0.5}
    assert _loaded_as_before(output) == expected
    # Same values, and the same order of names as the dict filled row by row.
    assert list(metrics.items()) == list(_loaded_as_before(output).items())


@pytest.mark.parametrize("ref", ["azureml:clf:1", "azureml:clf@latest"])
def test_a_run_records_the_exact_model_version_and_reruns_keep_it(team, alice, tmp_path, clf, ref):
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=READER.format(flavour="custom_model", ref=ref))
    second = services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "m2", "two"))
    run = run_create(version=pipeline.latest_version, user=alice)
    recorded = RunModelInput.objects.get(run=run, name="clf")
    assert recorded.model_version == (clf if ref.endswith(":1") else second)
    assert recorded.reference == ref
    services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "m3", "three"))
    set_step(run, "score", state=StepState.SUCCEEDED)
    run.state = "succeeded"
    run.save(update_fields=["state"])
    rerun = run_rerun(run=run, user=alice)
    assert RunModelInput.objects.get(run=rerun, name="clf").model_version == recorded.model_version


def test_model_inputs_refuse_what_is_not_there_with_nothing_saved(team, alice, clf):
    missing = make_pipeline(
        team, alice, name="m", yaml_text=READER.format(flavour="custom_model", ref="azureml:nope:1")
    )
    with pytest.raises(RunInputError) as refused:
        run_create(version=missing.latest_version, user=alice)
    assert "is not registered" in refused.value.errors["clf"]
    wrong = make_pipeline(team, alice, name="w", yaml_text=READER.format(flavour="mlflow_model", ref="azureml:clf:1"))
    with pytest.raises(RunInputError) as refused:
        run_create(version=wrong.latest_version, user=alice)
    assert "is a custom_model but the input is mlflow_model" in refused.value.errors["clf"]
    services.model_archive(version=clf)
    latest = make_pipeline(
        team, alice, name="l", yaml_text=READER.format(flavour="custom_model", ref="azureml:clf@latest")
    )
    with pytest.raises(RunInputError) as refused:
        run_create(version=latest.latest_version, user=alice)
    assert "only archived versions" in refused.value.errors["clf"]
    assert not RunModelInput.objects.exists()


def test_the_spec_keeps_the_model_type_through_json_and_yaml():
    spec, _ = parse_text(READER.format(flavour="mlflow_model", ref="azureml:clf@latest"))
    decl = spec.inputs["clf"]
    assert (decl.type, decl.asset, decl.asset_kind) == ("uri_folder", "azureml:clf@latest", "mlflow_model")
    assert from_json(to_json(spec)).inputs["clf"].asset_kind == "mlflow_model"
    assert b"type: mlflow_model" in yaml_files(spec)["pipeline.yml"]


def test_the_models_command_creates_and_lists(team, tmp_path):
    out = io.StringIO()
    call_command(
        "models",
        "create",
        "--name",
        "cli",
        "--path",
        str(model_file(tmp_path, "m", "m")),
        "--flavour",
        "mlflow_model",
        "--tag",
        "stage=dev",
        stdout=out,
    )
    assert "created azureml:cli:1 (mlflow_model" in out.getvalue()
    version = ModelVersion.objects.get(model__name="cli")
    assert version.tags == {"stage": "dev"} and version.flavour == "mlflow_model"
    listed = io.StringIO()
    call_command("models", "list", stdout=listed)
    assert "cli:1\tmlflow_model" in listed.getvalue()
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("models", "create", "--name", "cli", "--path", str(tmp_path / "absent"), stderr=err)
    assert exited.value.code == 2 and "no such file or folder" in err.getvalue()


@pytest.mark.parametrize(
    "output, message",
    [
        ("{type: uri_folder, name: m, deploy: d}", "'deploy' is for an output of type custom_model"),
        ("{type: custom_model, name: m, deploy: '${{parent.jobs.a.outputs.b}}'}", "deploy takes a name or"),
        ("{type: custom_model, name: m, deploy: 'bad name!'}", "is not a valid deployment name"),
        ("{type: custom_model, deploy: d}", "needs the output's 'name'"),
    ],
)
def test_a_bad_deploy_key_is_named(output, message):
    text = f"type: pipeline\njobs:\n  train:\n    command: echo\n    outputs:\n      model: {output}\n"
    with pytest.raises(SpecError, match=message):
        parse_text(text)


def test_a_named_model_output_registers_and_deploys_when_asked(team, alice, tmp_path):
    yaml_text = """
type: pipeline
inputs:
  deploy_as: {type: string, optional: true}
jobs:
  train:
    command: echo ${{outputs.model}}
    outputs:
      model: {type: custom_model, name: clf, deploy: "${{parent.inputs.deploy_as}}"}
"""
    pipeline = make_pipeline(team, alice, name="trainer", yaml_text=yaml_text)
    artifact = artifacts.store_output(model_file(tmp_path, "model.pkl", "m"), Artifact.Kind.FILE)
    quiet = run_create(version=pipeline.latest_version, user=alice)
    step = set_step(quiet, "train", state=StepState.SUCCEEDED)
    StepOutput.objects.create(step_run=step, name="model", artifact=artifact)
    (version,) = services.register_named_model_outputs(step_run=step)
    assert (version.model.name, version.flavour, version.step_output.step_run) == ("clf", "custom_model", step)
    assert not Deployment.objects.exists()
    asked = run_create(version=pipeline.latest_version, user=alice, inputs={"deploy_as": "live"})
    step = set_step(asked, "train", state=StepState.SUCCEEDED)
    StepOutput.objects.create(step_run=step, name="model", artifact=artifact)
    assert services.register_named_model_outputs(step_run=step) == [], "the same content adds no version"
    assert Deployment.objects.get(name="live").model_version == version


def test_gc_keeps_the_files_of_model_versions(team, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from runs import gc

    kept = services.model_create_from_path(team=team, name="clf", path=model_file(tmp_path, "m", "model"))
    Artifact.objects.filter(pk=kept.artifact_id).update(created_at=timezone.now() - timedelta(days=2))
    report = gc.collect(dry_run=False)
    assert kept.artifact.sha256 not in report.artifacts
    assert artifacts.artifact_intact(kept.artifact, verify_content=True)
