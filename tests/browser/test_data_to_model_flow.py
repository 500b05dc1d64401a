"""From a CSV to a model, in one browser session with a real worker: upload the CSV (with its
progress bar), preview it, run a pipeline that reads `azureml:NAME@latest`, register the step's
output as data and as a model, and walk the model's lineage back to the uploaded CSV."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from pipelines_ui.models import Role, Team
from runs.models import RUN_TERMINAL, ComputeTarget, DataVersion, Run, RunState
from runs.registry.models import ModelVersion
from tests.browser.conftest import serve_app, sign_in
from tests.browser.test_data_pages import shot
from tests.conftest import make_user
from tests.integration.conftest import wait_for
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.browser

TRAIN = """
type: pipeline
inputs:
  raw: {type: uri_file, path: "azureml:scores@latest"}
jobs:
  train:
    command: >-
      mkdir -p ${{outputs.model}} && cp ${{inputs.d}} ${{outputs.model}}/seen.csv &&
      echo "rows: $(wc -l < ${{inputs.d}})"
    inputs: {d: "${{parent.inputs.raw}}"}
    outputs: {model: {type: uri_folder}}
"""


@pytest.fixture
def server(transactional_db, tmp_path):
    # A queue of our own: stale jobs on the shared default queue must not reach this worker.
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={"queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}", "is_default": True, "aliases": ["cpu-cluster"]},
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_upload_run_on_latest_register_and_walk_the_lineage_back(server, page, tmp_path):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team, Role.ADMIN)
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, server, "alice")

    csv_path = tmp_path / "scores.csv"
    csv_path.write_text("id,score\n" + "".join(f"r{i},{i / 10}\n" for i in range(50)))
    page.goto(server + "/data/new/")
    page.set_input_files("#data-file", str(csv_path))
    expect(page.locator("#create-version")).to_be_enabled()
    assert page.get_attribute("#upload-progress", "aria-valuenow") == "100"
    page.fill("input[name=name]", "scores")
    page.select_option("select[name=type]", "uri_file")
    page.click("#create-version")
    expect(page.locator("#preview-table tbody tr").first).to_contain_text("r0")
    uploaded = DataVersion.objects.get(asset__name="scores")

    pipeline = make_pipeline(team, alice, name="train on scores", yaml_text=TRAIN)
    page.goto(f"{server}/pipelines/{pipeline.pk}/run/")
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/runs/*/")
    run = wait_for(lambda: Run.objects.filter(state__in=RUN_TERMINAL).first(), timeout=60, message="the run to end")
    assert run.state == RunState.SUCCEEDED, list(run.steps.values_list("name", "state", "reason"))
    assert run.data_inputs.get().data_version == uploaded
    shot(page, "flow-run")

    page.goto(f"{server}/runs/{run.pk}/steps/train/")
    page.click("button.register-as-data")
    page.wait_for_selector("#preview-table")
    registered = DataVersion.objects.exclude(pk=uploaded.pk).get()
    assert registered.step_output.step_run.run == run

    page.goto(f"{server}/runs/{run.pk}/steps/train/")
    page.click(".register-as-model")
    expect(page.locator("h1")).to_be_visible()
    model = ModelVersion.objects.get()
    assert model.step_output == registered.step_output
    page.goto(f"{server}/models/")
    page.click("#model-table a")
    page.click("#lineage-link")
    expect(page.locator("#lineage-graph svg")).to_be_visible()
    shot(page, "flow-model-lineage")
    # model <- run <- the uploaded CSV: the graph links back to the version the run read.
    page.click(f"#lineage-data-{uploaded.pk} a")
    expect(page).to_have_url(f"{server}/data/{uploaded.asset_id}/?v=1")
    expect(page.locator("#preview-table tbody tr").first).to_contain_text("r0")
    assert not errors, errors
