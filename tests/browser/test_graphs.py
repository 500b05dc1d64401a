"""Wide graphs stay legible: fan-outs drawn as one node that a click expands, zoom, pan and fit on
every graph, and a Find step box on big ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from pipelines_ui import services
from pipelines_ui.models import Team
from runs.models import Run, RunState, StepRun, StepState
from stepwise.spec import parse_text
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.pipelines_ui.test_graph_groups import fan_yaml
from tests.runs.conftest import default_target, make_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots19")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def alice(monkeypatch):
    monkeypatch.setattr("runs.orchestrator.run_advance", lambda run_id: None)
    default_target()
    team = Team.objects.create(name="Data Science")
    return make_user("alice", team), team


def viewbox(page, holder: str = "#dag") -> list[float]:
    return [float(x) for x in page.get_attribute(f"{holder} svg", "viewBox").split()]


def test_a_40_wide_fan_out_on_the_run_page(web, page, alice):
    user, team = alice
    pipeline = services.pipeline_create(team=team, name="fan40", user=user, spec=parse_text(fan_yaml(40))[0])
    run = make_run(pipeline, user)
    now = timezone.now()
    StepRun.objects.filter(run=run).update(state=StepState.SUCCEEDED, attempt=1, started_at=now, finished_at=now)
    StepRun.objects.filter(run=run, name="train_3").update(state=StepState.FAILED, exit_code=1)
    StepRun.objects.filter(run=run, name="report").update(state=StepState.SKIPPED, started_at=None, attempt=0)
    Run.objects.filter(pk=run.pk).update(state=RunState.FAILED, started_at=now, finished_at=now)
    page.set_default_timeout(20_000)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/")

    group = page.locator("#dag g.node.step-group")
    assert group.get_attribute("data-state") == "failed"  # the most telling state of its 40 steps
    assert "40 similar steps" in group.text_content()
    # Legible: the label is drawn at least 9 px high.
    assert page.eval_on_selector("#dag g.node.step-group text", "t => t.getBoundingClientRect().height") >= 9
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-failed-fan40-grouped.png"), full_page=True)

    # Expanded: 40 nodes, each in its own state; the graph opens at a readable size and pans.
    with page.expect_navigation():
        group.click()
    assert "expand=group-step-train_0" in page.url
    assert page.locator("#dag g.node.step").count() == 42
    assert page.get_attribute("#dag g.node#step-train_3", "data-state") == "failed"
    assert float(page.get_attribute("#dag", "data-scale")) >= 0.6
    before = viewbox(page)
    box = page.locator("#dag .dag-viewport").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 50, steps=5)
    page.mouse.up()
    after = viewbox(page)
    assert after[0] > before[0] and after[1] > before[1] and after[2:] == before[2:]
    page.screenshot(path=str(SHOTS / "run-failed-fan40-expanded.png"), full_page=True)

    page.click("#dag .dag-fit")
    fitted = viewbox(page)
    assert fitted[3] > 2 * before[3]  # the whole height of the tall graph
    scale = float(page.get_attribute("#dag", "data-scale"))
    page.click("#dag .dag-zoom-in")
    assert float(page.get_attribute("#dag", "data-scale")) == pytest.approx(scale * 1.25, rel=0.01)


def test_a_500_wide_fan_out_in_the_editor_and_find_step(web, page, alice):
    user, team = alice
    wide = services.pipeline_create(team=team, name="fan500", user=user, spec=parse_text(fan_yaml(500))[0])
    page.set_default_timeout(30_000)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, web, "alice")
    page.goto(f"{web}/pipelines/{wide.pk}/")
    label = page.locator(".dag-svg g.node.step-group")
    assert "500 similar steps" in label.text_content()
    assert page.eval_on_selector(".dag-svg g.node.step-group text", "t => t.getBoundingClientRect().height") >= 9
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "editor-fan500-grouped.png"))

    sixty = services.pipeline_create(team=team, name="fan60", user=user, spec=parse_text(fan_yaml(60))[0])
    page.goto(f"{web}/pipelines/{sixty.pk}/?expand=group-step-train_0")
    find = page.locator(".dag-svg .dag-find")
    find.fill("train_42")
    holder = page.locator(".dag-svg")
    assert holder.get_attribute("data-found") == "step-train_42"
    assert page.locator(".dag-svg g.node.dag-found").count() == 1
    node = page.locator(".dag-svg g#step-train_42").bounding_box()
    view = page.locator(".dag-svg .dag-viewport").bounding_box()
    # Centred in the view.
    assert view["x"] < node["x"] < view["x"] + view["width"] and view["y"] < node["y"] < view["y"] + view["height"]
    page.screenshot(path=str(SHOTS / "editor-fan60-find.png"))


def test_a_small_graph_is_fitted_no_bigger_than_its_labels_read_well(web, page, alice):
    """Two steps in the editor's column: fitted to its width they were drawn at three times their size."""
    user, team = alice
    small = services.pipeline_create(team=team, name="fan2", user=user, spec=parse_text(fan_yaml(2))[0])
    page.set_default_timeout(20_000)
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, web, "alice")
    page.goto(f"{web}/pipelines/{small.pk}/")
    assert float(page.get_attribute(".dag-svg", "data-scale")) == pytest.approx(1.2, rel=0.01)
    label = page.eval_on_selector(".dag-svg g#step-prep text", "t => t.getBoundingClientRect().height")
    assert 9 <= label <= 16
    # Whole and centred: every node inside the view.
    view = page.locator(".dag-svg .dag-viewport").bounding_box()
    for name in ("prep", "train_0", "train_1", "report"):
        node = page.locator(f".dag-svg g#step-{name}").bounding_box()
        assert view["x"] <= node["x"] and node["x"] + node["width"] <= view["x"] + view["width"]
        assert view["y"] <= node["y"] and node["y"] + node["height"] <= view["y"] + view["height"]
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "editor-small-graph.png"))
    page.click(".dag-svg .dag-zoom-in")
    assert float(page.get_attribute(".dag-svg", "data-scale")) == pytest.approx(1.5, rel=0.01)


def test_the_run_pages_graph_takes_the_pages_width(web, page, alice):
    """The iris example, drawn left to right with its inputs and outputs: beside the timeline it
    was fitted at about 0.6 and its labels were 6 px high."""
    user, team = alice
    version = services.pipeline_import(team=team, path=EXAMPLES / "sklearn-iris" / "pipeline.yml", user=user)
    run = make_run(version.pipeline, user)
    page.set_default_timeout(20_000)
    page.set_viewport_size({"width": 1400, "height": 900})
    sign_in(page, web, "alice")
    page.goto(f"{web}/runs/{run.pk}/")
    assert float(page.get_attribute("#dag", "data-scale")) >= 0.9
    assert page.eval_on_selector("#dag g#step-train text", "t => t.getBoundingClientRect().height") >= 9
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "run-iris-graph.png"), full_page=True)
