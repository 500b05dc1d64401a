"""An imported pipeline survives the editor: opening each step and saving it unchanged
changes nothing, so the forms lose none of what the YAML said."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from pipelines_ui import services
from tests.pipelines_ui.test_views import edit_post_from_page

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

COMPONENT_PIPELINE = {
    "pipeline.yml": """type: pipeline
display_name: with_components
settings:
  default_compute: azureml:cpu-cluster
inputs:
  depth: {type: integer, default: 3, min: 1, max: 50}
outputs:
  model:
    type: uri_folder
jobs:
  train:
    type: command
    component: ./train.yml
    environment_variables:
      MODE: fast
    inputs:
      max_depth: ${{parent.inputs.depth}}
    outputs:
      model_output: ${{parent.outputs.model}}
""",
    "train.yml": """type: command
name: train_model
version: 2
display_name: Train <b>it</b>
description: Fits a model.
inputs:
  max_depth:
    type: integer
    optional: true
    description: How deep.
    min: 1
    max: 50
  criterion:
    type: string
    default: gini
    enum: [gini, entropy]
outputs:
  model_output:
    type: uri_folder
    description: The model.
code: ./src
environment:
  image: python:3.11-slim
command: >-
  python train.py --criterion ${{inputs.criterion}}
  $[[--max_depth ${{inputs.max_depth}}]] --out ${{outputs.model_output}}
""",
    "src/train.py": "print('train')\n",
    "src/data.bin": "\x00\x01binary",
}


def _resave_every_step(client, pipeline) -> None:
    spec = services.pipeline_working_spec(pipeline=pipeline)
    for name in spec.jobs:
        url = reverse("step_edit", args=[pipeline.pk, name])
        response = client.post(url, edit_post_from_page(client, url))
        assert response.status_code == 302, (name, response.content.decode()[:2000])
    url = reverse("pipeline_detail", args=[pipeline.pk])
    data = edit_post_from_page(client, url)
    pin = {k: v for k, v in data.items() if k.startswith(("pin-", "pout-", "base_version"))}
    assert client.post(reverse("pipeline_interface", args=[pipeline.pk]), pin).status_code == 302
    settings_data = {k: v for k, v in data.items() if not k.startswith(("pin-", "pout-"))}
    assert client.post(reverse("pipeline_settings", args=[pipeline.pk]), settings_data).status_code == 302


def test_component_pipeline_round_trips_through_the_forms(client, alice, team, compute, tmp_path):
    for rel, text in COMPONENT_PIPELINE.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
    version = services.pipeline_import(team=team, path=tmp_path / "pipeline.yml", user=alice)
    client.force_login(alice)
    _resave_every_step(client, version.pipeline)
    version.pipeline.refresh_from_db()
    assert version.pipeline.latest_version.number == 1


@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "pipeline.yml").exists()) if EXAMPLES.exists() else []
)
def test_examples_round_trip_through_the_forms(client, alice, team, compute, example):
    version = services.pipeline_import(team=team, path=EXAMPLES / example / "pipeline.yml", user=alice)
    client.force_login(alice)
    _resave_every_step(client, version.pipeline)
    version.pipeline.refresh_from_db()
    assert version.pipeline.latest_version.number == 1


def test_nested_pipeline_components_round_trip_through_the_forms(client, alice, team, compute, tmp_path):
    corpus = Path(__file__).resolve().parents[1] / "azureml_corpus" / "pipeline_component"
    shutil.copytree(corpus, tmp_path / "p")
    version = services.pipeline_import(team=team, path=tmp_path / "p" / "pipeline.yml", user=alice)
    client.force_login(alice)
    _resave_every_step(client, version.pipeline)
    version.pipeline.refresh_from_db()
    assert version.pipeline.latest_version.number == 1


def test_an_inner_steps_binding_is_changed_in_its_component_not_in_the_form(client, alice, team, compute, tmp_path):
    corpus = Path(__file__).resolve().parents[1] / "azureml_corpus" / "pipeline_component"
    shutil.copytree(corpus, tmp_path / "p")
    version = services.pipeline_import(team=team, path=tmp_path / "p" / "pipeline.yml", user=alice)
    client.force_login(alice)
    url = reverse("step_edit", args=[version.pipeline.pk, "train_and_eval__fit__train"])
    data = edit_post_from_page(client, url)
    assert data["in-2-name"] == "times" and data["in-2-value"] == "2"
    data["in-2-value"] = "5"
    response = client.post(url, data)
    assert response.status_code == 400
    assert "belongs to pipeline component &#x27;fit&#x27;" in response.content.decode()
    version.pipeline.refresh_from_db()
    assert version.pipeline.latest_version.number == 1
