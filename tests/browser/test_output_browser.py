"""The outputs browser in a real browser: from the run page to a step output's file tree, a
preview of a hostile CSV, and a one-file download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines_ui.models import Role
from tests.browser.conftest import sign_in
from tests.conftest import make_user

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("STEPWISE_SHOTS", "/tmp/shots16"))


def test_a_step_outputs_files_are_browsed_previewed_and_downloaded(page, web, team, tmp_path, settings):
    from runs import artifacts
    from runs.models import StepOutput, StepState
    from tests.runs.conftest import make_pipeline, make_run, set_step

    settings.STEPWISE_ARTIFACTS = str(tmp_path / "artifacts")  # the store the served app reads
    alice = make_user("alice", team, Role.ADMIN)
    run = make_run(make_pipeline(team, alice), alice)
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "rows.csv").write_text('a,b\n<img src=x onerror=alert(1)>,"=1+1"\n')
    (out / "notes.txt").write_text("plain notes\n")
    step = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1, exit_code=0)
    StepOutput.objects.create(step_run=step, name="data", artifact=artifacts.store_output(out, "uri_folder"))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    sign_in(page, web, "alice")

    page.goto(f"{web}/runs/{run.pk}/steps/prep/")
    page.click("a.browse-output")
    page.wait_for_selector("#preview-table")
    assert page.locator("#file-tree .tree-folder").all_inner_texts() == ["tables/"]
    assert page.locator("#file-tree .tree-file").all_inner_texts() == ["notes.txt", "rows.csv"]
    cells = page.locator("#preview-table tbody tr").first.locator("td").all_inner_texts()
    assert cells == ["<img src=x onerror=alert(1)>", "=1+1"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "output-browser.png"), full_page=True)

    page.click("#file-tree a.tree-file:text('notes.txt')")
    page.wait_for_selector("#preview-text")
    assert page.locator("#preview-text").inner_text().strip() == "plain notes"
    with page.expect_download() as info:
        page.locator("#file-tree li", has_text="notes.txt").locator("a.tree-download").click()
    assert info.value.suggested_filename == "notes.txt"
    assert Path(info.value.path()).read_text() == "plain notes\n"
    assert errors == []
