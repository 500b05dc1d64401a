"""Data pages in a real browser: a chunked upload interrupted and resumed, the preview of a hostile CSV."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from pipelines_ui.models import Role
from runs.models import DataVersion
from tests.browser.conftest import sign_in
from tests.conftest import make_user

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("STEPWISE_SHOTS", "/tmp/shots16"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_resumes_after_a_dropped_chunk_and_previews_safely(page, web, team, tmp_path):
    make_user("alice", team, Role.ADMIN)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, web, "alice")

    page.goto(web + "/data/")
    assert page.locator("#empty-state").is_visible()
    shot(page, "data-empty")

    rows = ["name,formula,note", '<b>bold</b>,"=HYPERLINK(""http://evil"",""x"")",<script>alert(1)</script>']
    rows += [f"row{i},{i},plain" for i in range(90_000)]
    csv_path = tmp_path / "hostile.csv"
    csv_path.write_text("\n".join(rows) + "\n")  # about 1.6 MB: two chunks
    size = csv_path.stat().st_size

    dropped = []

    def drop_second_chunk(route):
        if "offset=1048576" in route.request.url and not dropped:
            dropped.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/data/uploads/*/**", drop_second_chunk)
    page.goto(web + "/data/new/")
    page.set_input_files("#data-file", str(csv_path))
    expect(page.locator("#upload-status")).to_contain_text("interrupted")
    assert dropped and page.locator("#create-version").is_disabled()
    shot(page, "data-upload-interrupted")

    # Choosing the same file again resumes where the upload stopped.
    page.set_input_files("#data-file", [])
    page.set_input_files("#data-file", str(csv_path))
    expect(page.locator("#create-version")).to_be_enabled()
    assert page.get_attribute("#upload-progress", "aria-valuenow") == "100"
    shot(page, "data-upload-done")
    page.fill("input[name=name]", "hostile")
    page.click("#create-version")
    page.wait_for_selector("#preview-table")
    shot(page, "data-asset")

    version = DataVersion.objects.get(asset__name="hostile")
    assert version.size == size and version.source == DataVersion.Source.UPLOAD
    cells = page.locator("#preview-table tbody tr").first.locator("td").all_inner_texts()
    assert cells == ["<b>bold</b>", '=HYPERLINK("http://evil","x")', "<script>alert(1)</script>"]
    assert page.locator("#preview-table tbody tr").count() == 20

    page.goto(web + "/data/")
    assert page.locator("#data-table").inner_text().count("hostile") == 1
    shot(page, "data-list")
    # The one chunk the test dropped is the only failed request.
    assert [e for e in errors if "net::ERR_FAILED" not in e] == [] and len(errors) <= 1, errors


def test_a_datastore_is_browsed_and_a_folder_registered(page, web, team, tmp_path, settings):
    from runs import data_assets

    make_user("alice", team, Role.ADMIN)
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    root = tmp_path / "lake"
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "a.csv").write_text("x,y\n1,2\n")
    (root / "notes.txt").write_text("hello")
    store = data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))
    sign_in(page, web, "alice")
    page.goto(f"{web}/datastores/{store.pk}/")
    shot(page, "datastore")
    row = page.locator("#datastore-files tr", has_text="raw/")
    row.locator("input[name=name]").fill("raw-from-lake")
    row.locator("button").click()
    page.wait_for_selector("#preview-table")
    shot(page, "data-from-datastore")
    assert DataVersion.objects.get(asset__name="raw-from-lake").datastore_id == store.pk


def test_register_as_data_from_the_run_page(page, web, team, tmp_path, settings):
    from runs import artifacts
    from runs.models import StepOutput, StepState
    from tests.runs.conftest import make_pipeline, make_run, set_step

    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")  # the store the served app reads
    alice = make_user("alice", team, Role.ADMIN)
    run = make_run(make_pipeline(team, alice), alice)
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.csv").write_text("a,b\n1,2\n")
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1, exit_code=0)
    StepOutput.objects.create(step_run=step, name="data", artifact=artifacts.store_output(out, "uri_folder"))
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/steps/prep/")
    shot(page, "run-register-as-data")
    page.click("button.register-as-data")
    page.wait_for_selector("#preview-table")
    version = DataVersion.objects.get(asset__name="demo-prep-data")
    assert version.step_output.step_run == step and version.version == "1"
    shot(page, "data-from-step-output")
