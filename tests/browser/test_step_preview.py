"""The step page redraws the graph from the unsaved form while the user edits: wiring an input
shows its new edge at once, and nothing is saved until Save step."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui.models import PipelineVersion, Team
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots19")


def edges(page) -> set[str]:
    return set(page.eval_on_selector_all("#step-preview g.edge title", "ts => ts.map(t => t.textContent)"))


def test_wiring_an_input_previews_its_edge_before_saving(web, page):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice)  # prep -> train -> report
    page.set_default_timeout(20_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    sign_in(page, web, "alice")
    page.goto(f"{web}/pipelines/{pipeline.pk}/steps/report/")
    # s0 prep, s1 train, s2 report: report reads only train's model.
    assert "s0->s2" not in edges(page) and "s1->s2" in edges(page)

    page.click('[data-formset-add="in"]')
    row = page.locator('[data-formset-body="in"] .formset-row').last
    row.locator('input[name$="-name"]').fill("rows")
    row.locator("select.input-source").select_option("output:prep.data")
    page.wait_for_function(
        "() => document.querySelector('#step-preview g.edge title') && "
        "Array.from(document.querySelectorAll('#step-preview g.edge title'))"
        ".some(t => t.textContent === 's0->s2')"
    )
    page.wait_for_selector("#step-preview[data-preview=shown]")
    assert "Preview of your unsaved changes" in page.inner_text("#step-preview-note")
    assert page.locator("#step-preview g#step-report.dag-current").count() == 1
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "editor-preview.png"))
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1

    # A form error: the saved graph, and the note says why.
    page.fill('input[name="name"]', "Report")
    page.wait_for_function(
        "() => document.getElementById('step-preview-note').textContent.includes('Showing the saved graph')"
    )
    assert "upper-case" in page.inner_text("#step-preview-note")
    assert "s0->s2" not in edges(page)
