"""Register a step output as a model on the run page, then walk from the model through its lineage
graph to the producing run and back to the data version it was trained on."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from pipelines_ui.models import Role
from runs import artifacts
from runs.data_assets import data_create_from_path
from runs.models import Artifact, Metric, StepOutput, StepState
from runs.registry.models import ModelVersion
from runs.services import run_create
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, set_step

pytestmark = pytest.mark.browser

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


def test_walk_from_the_model_through_its_lineage_to_the_data(page, web, team, tmp_path, settings):
    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")  # the store the served app reads
    alice = make_user("alice", team, Role.ADMIN)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "rows.csv").write_text("a,b\n1,2\n")
    data = data_create_from_path(team=team, name="digits", path=tmp_path / "d", user=alice)
    run = run_create(
        version=make_pipeline(team, alice, name="<i>train</i>", yaml_text=TRAIN).latest_version, user=alice
    )
    step = set_step(run, "train", state=StepState.SUCCEEDED)
    Metric.objects.create(step_run=step, name="accuracy", value=0.93)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_text("model")
    output = StepOutput.objects.create(
        step_run=step, name="model", artifact=artifacts.store_output(tmp_path / "m", Artifact.Kind.FOLDER)
    )

    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/steps/train/")
    page.click(".register-as-model")
    expect(page.locator("#model-metrics")).to_contain_text("accuracy")
    model = ModelVersion.objects.get(step_output=output)
    page.goto(web + "/models/")
    page.click("#model-table a")
    expect(page.locator("#model-metrics")).to_contain_text("0.93")
    page.click("#lineage-link")
    graph = page.locator("#lineage-graph svg")
    expect(graph).to_be_visible()
    expect(page.locator(f"#lineage-model-{model.pk}")).to_contain_text(f"{model.model.name}:1")
    # The pipeline's name is markup-like text: shown as text in the graph, never as an element.
    expect(page.locator(f"#lineage-run-{run.pk}")).to_contain_text("<i>train</i>")
    assert page.locator("#lineage-graph svg i").count() == 0
    page.click(f"#lineage-run-{run.pk} a")
    expect(page).to_have_url(f"{web}/runs/{run.pk}/")
    page.go_back()
    page.click(f"#lineage-data-{data.pk} a")
    expect(page).to_have_url(f"{web}/data/{data.asset_id}/?v=1")
    expect(page.locator("h1")).to_contain_text("digits")
    # And from the data, its lineage leads forward to the model again.
    page.click("#lineage-link")
    expect(page.locator(f"#lineage-model-{model.pk}")).to_be_visible()
    assert not errors, errors
