"""Model pages, "Register as model" on the run page, and the lineage graphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pipelines_ui.models import Role
from runs import artifacts
from runs.data_assets import data_create_from_path
from runs.models import Artifact, Metric, StepOutput, StepState
from runs.registry import lineage, services
from runs.registry.models import ModelVersion
from runs.services import run_create
from stepwise.lineage import LineageEdge, LineageNode, lineage_dot
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, set_step

pytestmark = pytest.mark.django_db

TRAIN = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: "azureml:digits@latest"}
jobs:
  train:
    command: cp -r ${{inputs.d}} ${{outputs.model}}
    inputs: {d: "${{parent.inputs.raw}}"}
    outputs: {model: {type: uri_folder}}
"""
SCORE = """
type: pipeline
inputs:
  clf: {type: custom_model, path: "azureml:clf@latest"}
jobs:
  score:
    command: ls ${{inputs.m}}
    inputs: {m: "${{parent.inputs.clf}}"}
"""


def folder(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "f.txt").write_text(text)
    return tmp_path / name


@pytest.fixture
def chain(team, alice, tmp_path):
    """digits:1 -> run (train) -> clf:1 -> run (score)."""
    data = data_create_from_path(team=team, name="digits", path=folder(tmp_path, "d", "<b>rows</b>"))
    train_run = run_create(version=make_pipeline(team, alice, name="train", yaml_text=TRAIN).latest_version, user=alice)
    step = set_step(train_run, "train", state=StepState.SUCCEEDED)
    Metric.objects.create(step_run=step, name="accuracy", value=0.97)
    artifact = artifacts.store_output(folder(tmp_path, "m", "model"), Artifact.Kind.FOLDER)
    output = StepOutput.objects.create(step_run=step, name="model", artifact=artifact)
    model = services.model_create_from_step_output(step_output=output, name="clf", user=alice)
    score_run = run_create(version=make_pipeline(team, alice, name="score", yaml_text=SCORE).latest_version, user=alice)
    return data, train_run, model, score_run


def test_register_as_model_on_the_run_page(client, alice, run, tmp_path):
    step = set_step(run, "train", state=StepState.SUCCEEDED)
    artifact = artifacts.store_output(folder(tmp_path, "o", "m"), Artifact.Kind.FOLDER)
    StepOutput.objects.create(step_run=step, name="model", artifact=artifact)
    client.force_login(alice)
    page = client.get(reverse("run_step", args=[run.pk, "train"]))
    assert b"Register as model" in page.content
    response = client.post(
        reverse("step_output_register_model", args=[run.pk, "train", "model"]),
        {"name": "digits clf", "flavour": "custom_model"},
    )
    version = ModelVersion.objects.get()
    assert version.model.name == "digits-clf" and version.step_output.step_run == step
    assert response.status_code == 302 and response["Location"] == version.get_absolute_url()
    refused = client.post(reverse("step_output_register_model", args=[run.pk, "train", "model"]), {"flavour": "onnx"})
    assert refused.status_code == 302 and ModelVersion.objects.count() == 1
    assert "unknown model flavour" in client.get(refused["Location"]).content.decode()


def test_a_viewer_cannot_register(client, team, run, tmp_path):
    vera = make_user("vera", team, Role.VIEWER)
    step = set_step(run, "train", state=StepState.SUCCEEDED)
    artifact = artifacts.store_output(folder(tmp_path, "o", "m"), Artifact.Kind.FOLDER)
    StepOutput.objects.create(step_run=step, name="model", artifact=artifact)
    client.force_login(vera)
    assert client.post(reverse("step_output_register_model", args=[run.pk, "train", "model"])).status_code == 403
    assert not ModelVersion.objects.exists()


def test_the_model_page_shows_versions_metrics_and_escapes(client, alice, team, tmp_path, chain):
    _data, _train, model, _score = chain
    ModelVersion.objects.filter(pk=model.pk).update(description="<script>x</script>")
    client.force_login(alice)
    listing = client.get(reverse("model_list")).content.decode()
    assert "clf" in listing and "&lt;script&gt;" in listing and "<script>x" not in listing
    page = client.get(reverse("model_detail", args=[model.model_id])).content.decode()
    assert 'id="model-metrics"' in page and "accuracy" in page and "0.97" in page
    assert reverse("lineage_model", args=[model.pk]) in page and "&lt;script&gt;x" in page


def test_upload_a_model_file(client, alice, team):
    client.force_login(alice)
    response = client.post(
        reverse("model_upload"),
        {
            "team": team.pk,
            "name": "uploaded",
            "flavour": "custom_model",
            "file": SimpleUploadedFile("../../evil.pkl", b"bytes"),
        },
    )
    version = ModelVersion.objects.get()
    assert response.status_code == 302 and version.source == "upload"
    assert artifacts.stored_files(version.artifact) == ["evil.pkl"]
    bad = client.post(
        reverse("model_upload"),
        {"team": team.pk, "name": "bad name!", "flavour": "custom_model", "file": SimpleUploadedFile("m", b"x")},
    )
    assert bad.status_code == 200 and "invalid model name" in bad.content.decode()


def test_lineage_walks_from_the_model_to_the_data_and_the_runs_that_read_it(chain):
    data, train_run, model, score_run = chain
    found = lineage.model_lineage(model)
    assert set(found.nodes) == {f"data:{data.pk}", f"run:{train_run.pk}", f"model:{model.pk}", f"run:{score_run.pk}"}
    edges = {(e.source, e.target, e.label) for e in found.edges}
    assert edges == {
        (f"data:{data.pk}", f"run:{train_run.pk}", "raw"),
        (f"run:{train_run.pk}", f"model:{model.pk}", "train.model"),
        (f"model:{model.pk}", f"run:{score_run.pk}", "clf"),
    }
    # From the data: everything downstream, across both pipelines.
    assert f"run:{score_run.pk}" in lineage.data_lineage(data).nodes
    # From a run: what it read.
    assert f"data:{data.pk}" in lineage.run_lineage(train_run).nodes


def test_lineage_depth_is_bounded(chain):
    data, _train, model, score_run = chain
    found = lineage.lineage_for(lineage._data_node(data), team_id=data.asset.team_id, depth=1)
    assert f"model:{model.pk}" not in found.nodes and f"run:{score_run.pk}" not in found.nodes


def test_lineage_dot_escapes_labels_and_urls():
    nodes = [
        LineageNode(key="data:1", kind="data", label='a"b\\n<x>&', url='/data/1/?v=1"><script>'),
        LineageNode(key="run:2", kind="run", label="run #2"),
    ]
    dot = lineage_dot(nodes, [LineageEdge("data:1", "run:2", 'in"put')], focus="run:2")
    assert 'label="a\\"b\\\\n<x>&amp;' in dot
    assert '"><script>' not in dot and "%22%3E%3Cscript%3E" in dot
    assert '"lineage-data-1" -> "lineage-run-2" [label="in\\"put"]' in dot


def test_lineage_pages_render_svg_with_links(client, alice, chain):
    data, train_run, model, score_run = chain
    client.force_login(alice)
    page = client.get(reverse("lineage_model", args=[model.pk])).content.decode()
    assert "<svg" in page and f"/data/{data.asset_id}/?v=1" in page and f"/runs/{score_run.pk}/" in page
    run_page = client.get(reverse("lineage_run", args=[train_run.pk])).content.decode()
    assert 'id="run-inputs"' in run_page and "azureml:digits@latest" in run_page and "digits:1" in run_page
    assert 'id="lineage-alone"' not in run_page
    assert client.get(reverse("lineage_data", args=[data.pk])).status_code == 200


def test_a_lineage_page_highlights_the_section_of_what_it_traces(client, alice, chain):
    data, train_run, model, _score = chain
    client.force_login(alice)
    for name, pk, section in [
        ("lineage_run", train_run.pk, "runs"),
        ("lineage_data", data.pk, "data"),
        ("lineage_model", model.pk, "models"),
    ]:
        response = client.get(reverse(name, args=[pk]))
        assert response.context["nav"] == section


def test_the_lineage_of_a_run_with_nothing_registered_says_how_to_get_one(client, alice, run):
    client.force_login(alice)
    page = client.get(reverse("lineage_run", args=[run.pk])).content.decode()
    assert "<svg" in page
    assert 'id="lineage-alone"' in page and "Register as data" in page


def test_lineage_of_another_teams_objects_is_404(client, charlie, chain):
    data, train_run, model, _score = chain
    client.force_login(charlie)
    for url in (
        reverse("lineage_model", args=[model.pk]),
        reverse("lineage_data", args=[data.pk]),
        reverse("lineage_run", args=[train_run.pk]),
        reverse("model_detail", args=[model.model_id]),
    ):
        assert client.get(url).status_code == 404
