"""Metric charts: a curve grows live while a step logs, and the compare page of three runs
shows the parameter that changed, the metric differences and overlaid charts."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipelines_ui.models import Team
from pipelines_ui.services import pipeline_save_version
from runs import compare
from runs.models import ComputeTarget, Isolation, Metric, Param, Run, RunState, StepState
from runs.services import run_create
from stepwise.spec import parse_text
from tests.browser.conftest import serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import PIPELINE_YAML, make_pipeline, make_run, set_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots18")
SHOTS_CHARTS = Path("/tmp/chart-shots")

# The step logs 25 points once the test opens gate 1, 25 more once it opens gate 2: the test
# sees the curve at 25 points, live, before the rest exist. mlflow is the shim, unchanged calls.
LIVE_YAML = """
type: pipeline
jobs:
  train:
    type: command
    environment_variables:
      GATE: {gate}
    command: >-
      python -c "import os, time, mlflow; g = os.environ['GATE'];
      wait = lambda p: next(True for _ in iter(int, 1) if os.path.exists(p) or time.sleep(0.05));
      mlflow.log_param('lr', 0.1); wait(g + '/1');
      [mlflow.log_metric('loss', 1.0 / (i + 1), step=i) for i in range(25)]; wait(g + '/2');
      [mlflow.log_metric('loss', 1.0 / (i + 1), step=i) for i in range(25, 50)]; print('done')"
"""

COUNT = "() => window.stepwiseRunCharts ? window.stepwiseRunCharts.pointCount('loss') : -1"


@pytest.fixture
def server(transactional_db, tmp_path):
    """daphne and one step worker; the target unsandboxed, so that the step sees the test's gate files."""
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={
            "queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}",
            "is_default": True,
            "aliases": ["cpu-cluster"],
            "isolation": Isolation.NONE,
        },
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_a_curve_grows_live_while_a_step_logs(server, page, tmp_path):
    SHOTS.mkdir(exist_ok=True)
    gate = tmp_path / "gate"
    gate.mkdir()
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="live metrics", yaml_text=LIVE_YAML.format(gate=gate))
    run = run_create(version=pipeline.latest_version, user=alice)
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, server, "alice")
    page.goto(f"{server}/runs/{run.pk}/")
    page.wait_for_selector("body[data-live=open]")
    page.wait_for_selector("#metric-charts[data-loaded=true]")
    page.evaluate("window.__notReloaded = true")
    assert page.evaluate(COUNT) == 0

    (gate / "1").touch()
    page.wait_for_function(COUNT + " === 25")
    # What is drawn: the chart is updated (and counted) a tenth of a second after its points come.
    page.wait_for_selector("#metric-charts [data-chart='loss'][data-points='25']")
    assert page.is_visible("#metric-charts [data-chart='loss'] canvas")
    page.screenshot(path=str(SHOTS / "run-chart-25.png"), full_page=True)

    (gate / "2").touch()
    page.wait_for_function(COUNT + " === 50")
    page.wait_for_selector("#run-state .badge[data-state=succeeded]", timeout=60_000)
    assert page.evaluate("window.__notReloaded") is True
    # The live chart holds what the database holds, point for point.
    live = page.evaluate("() => window.stepwiseRunCharts.charts.loss.chart.data.datasets[0].data.map(p => [p.x, p.y])")
    stored = list(Metric.objects.filter(step_run__run=run, name="loss").order_by("step").values_list("step", "value"))
    assert [tuple(p) for p in live] == stored and len(stored) == 50
    # The selected step's parameters, logged with mlflow.log_param.
    page.wait_for_selector("#part-metrics [data-param=lr]")
    page.screenshot(path=str(SHOTS / "run-chart-50.png"), full_page=True)

    page.reload()
    page.wait_for_selector("#metric-charts[data-loaded=true]")
    assert page.evaluate(COUNT) == 50
    # Chart.js draws on a canvas and styles it through the CSSOM: nothing the CSP refuses.
    assert errors == []


@pytest.fixture
def web_only(transactional_db, tmp_path):
    with serve_app(tmp_path) as base:
        yield base


def test_compare_three_runs_shows_the_changed_parameter(web_only, page):
    SHOTS.mkdir(exist_ok=True)
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="digits")
    runs = []
    for epochs, lr, final in ((3, "0.1", 0.81), (3, "0.1", 0.86), (5, "0.01", 0.93)):
        run = make_run(pipeline, alice, epochs=epochs)
        Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
        train = set_step(run, "train", state=StepState.SUCCEEDED)
        Param.objects.create(step_run=train, name="lr", value=lr)
        Metric.objects.bulk_create(
            [Metric(step_run=train, name="accuracy", value=final * (i + 1) / 10, step=i) for i in range(10)]
            + [Metric(step_run=train, name="loss", value=1 / (i + 1), step=i) for i in range(10)]
        )
        runs.append(run)
    page.set_default_timeout(20_000)
    sign_in(page, web_only, "alice")

    page.goto(web_only + "/runs/")
    assert page.is_disabled("#compare-selected")
    assert "Tick 2 to 10 runs" in page.inner_text("#compare-hint")
    assert page.inner_text("#runs-table thead").count("accuracy") == 1
    for run in runs:
        page.check(f"#pick-{run.pk}")
    page.screenshot(path=str(SHOTS / "run-list-picked.png"), full_page=True)
    page.click("#compare-selected")
    page.wait_for_url("**/runs/compare/?ids=*")
    assert page.url.endswith("?ids=" + ",".join(str(r.pk) for r in runs))  # oldest first
    page.wait_for_selector("#metric-charts[data-loaded=true]")

    changed = page.locator("#compare-params tr.differs")
    assert changed.count() == 1
    assert changed.get_attribute("data-name") == "lr"
    assert page.locator("#compare-inputs tr.differs").get_attribute("data-name") == "epochs"
    assert "differs" in page.locator("#compare-metrics tr[data-name=accuracy]").get_attribute("class")
    assert "differs" not in (page.locator("#compare-metrics tr[data-name=loss]").get_attribute("class") or "")
    assert page.get_attribute("#metric-charts", "data-charts") == "2"
    assert page.evaluate("window.stepwiseCompareCharts.charts.accuracy.chart.data.datasets.length") == 3
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

    # A run of a newer version: the versions card sums up the diff and links to it.
    spec, _ = parse_text(PIPELINE_YAML.replace("default: 3", "default: 7"))
    pipeline_save_version(pipeline=pipeline, spec=spec, author=alice, message="more epochs")
    pipeline.refresh_from_db()
    newer = make_run(pipeline, alice)
    page.goto(f"{web_only}/runs/compare/?ids={runs[0].pk},{newer.pk}")
    changes = page.inner_text(f"#compare-versions li[data-run='{newer.pk}']")
    assert "diff v1 → v2" in changes and "epochs" in changes
    assert page.locator("#compare-inputs tr.differs").get_attribute("data-name") == "epochs"
    page.screenshot(path=str(SHOTS / "compare-versions.png"), full_page=True)

    page.goto(web_only + "/runs/?metric=accuracy+%3E+0.85")
    assert page.locator("#runs-table tbody tr").count() == 2
    page.goto(web_only + "/runs/?metric=accuracy+%3E+lots")
    assert "is not a number" in page.inner_text("#metric-error")
    page.screenshot(path=str(SHOTS / "run-list-bad-filter.png"), full_page=True)


RADII = (
    "name => window.stepwiseCompareCharts.charts[name].chart.data.datasets"
    ".map((d, i) => window.stepwiseCompareCharts.charts[name].chart.getDatasetMeta(i).data.map(p => p.options.radius))"
)


def test_a_metric_logged_once_is_drawn_as_a_point(web_only, page):
    """A final accuracy, one value per run: each run's line is a single point, drawn as a dot;
    curves of many points keep their lines bare."""
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="digits")
    runs = []
    for final in (0.81, 0.93):
        run = make_run(pipeline, alice)
        Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
        train = set_step(run, "train", state=StepState.SUCCEEDED)
        Metric.objects.create(step_run=train, name="accuracy", value=final, step=0)
        Metric.objects.bulk_create([Metric(step_run=train, name="loss", value=1 / (i + 1), step=i) for i in range(5)])
        runs.append(run)
    page.set_default_timeout(20_000)
    sign_in(page, web_only, "alice")
    page.goto(f"{web_only}/runs/compare/?ids={runs[0].pk},{runs[1].pk}")
    page.wait_for_selector("#metric-charts[data-loaded=true]")
    accuracy = page.evaluate(RADII, "accuracy")
    assert len(accuracy) == 2 and all(len(points) == 1 and points[0] > 0 for points in accuracy)
    loss = page.evaluate(RADII, "loss")
    assert [len(points) for points in loss] == [5, 5] and all(r == 0 for points in loss for r in points)
    # Both runs logged it at step 0: a step axis would only stretch from -1 to 1.
    assert page.evaluate("window.stepwiseCompareCharts.charts.accuracy.chart.options.scales.x.display") is False
    assert page.get_attribute("#metric-charts [data-chart='accuracy']", "data-shape") == "chart"
    page.screenshot(path=str(SHOTS / "compare-single-values.png"), full_page=True)


def test_a_metric_logged_once_in_a_run_is_shown_as_its_value(web_only, page):
    """On the run page one point is no curve: the value as text, not a dot on a step axis from -1 to 1."""
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    run = make_run(make_pipeline(team, alice, name="digits"), alice)
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
    train = set_step(run, "train", state=StepState.SUCCEEDED)
    Metric.objects.create(step_run=train, name="accuracy", value=0.93456, step=4)
    Metric.objects.bulk_create([Metric(step_run=train, name="loss", value=1 / (i + 1), step=i) for i in range(5)])
    page.set_default_timeout(20_000)
    sign_in(page, web_only, "alice")
    page.goto(f"{web_only}/runs/{run.pk}/")
    page.wait_for_selector("#metric-charts[data-loaded=true]")
    accuracy = page.locator("#metric-charts [data-chart='accuracy']")
    assert accuracy.get_attribute("data-shape") == "value"
    assert not accuracy.locator("canvas").is_visible()
    assert accuracy.locator(".chart-single-value").inner_text() == "0.9346"
    assert "at step 4" in accuracy.locator(".chart-single-note").inner_text()
    loss = page.locator("#metric-charts [data-chart='loss']")
    assert loss.get_attribute("data-shape") == "chart" and loss.locator("canvas").is_visible()
    assert page.evaluate("window.stepwiseRunCharts.charts.loss.chart.options.scales.x.display") is True
    page.screenshot(path=str(SHOTS / "run-single-value.png"), full_page=True)


METRIC_EVENT = (
    "([run, name, index]) => document.dispatchEvent(new CustomEvent('stepwise:metric',"
    " {detail: {run: run, name: name, step: 'train', index: index, value: index / 2}}))"
)


def open_run_charts(page, base: str) -> int:
    """A finished run whose loss chart the server draws; its page loaded and its socket open."""
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    run = make_run(make_pipeline(team, alice, name="digits"), alice)
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
    train = set_step(run, "train", state=StepState.SUCCEEDED)
    Metric.objects.bulk_create([Metric(step_run=train, name="loss", value=1 / (i + 1), step=i) for i in range(5)])
    page.set_default_timeout(20_000)
    sign_in(page, base, "alice")
    page.goto(f"{base}/runs/{run.pk}/")
    page.wait_for_selector("body[data-live=open]")
    page.wait_for_selector("#metric-charts[data-loaded=true][data-charts='1']")
    return run.pk


def test_live_names_past_the_cap_draw_no_chart_and_are_counted(web_only, page):
    run_id = open_run_charts(page, web_only)
    assert page.evaluate("window.stepwiseRunCharts.options.maxCharts") == compare.MAX_CHARTS
    assert not page.is_visible("#metric-charts .charts-hidden")
    # A cap of two, so that two names fill it: loss and accuracy get charts, the rest are counted.
    page.evaluate("window.stepwiseRunCharts.options.maxCharts = 2")
    for name, index in (("accuracy", 0), ("lr", 0), ("lr", 1), ("grad_norm", 0), ("accuracy", 1), ("lr", 2)):
        page.evaluate(METRIC_EVENT, [run_id, name, index])
    page.wait_for_selector("#metric-charts [data-chart='accuracy'][data-points='2']")
    assert page.get_attribute("#metric-charts", "data-charts") == "2"
    assert page.locator("#metric-charts [data-chart='lr'], #metric-charts [data-chart='grad_norm']").count() == 0
    assert page.evaluate("Object.keys(window.stepwiseRunCharts.charts).sort()") == ["accuracy", "loss"]
    # Distinct names, not points: lr logged three times counts once.
    assert page.is_visible("#metric-charts .charts-hidden")
    assert page.inner_text("#metric-charts .charts-hidden-count") == "2"
    SHOTS_CHARTS.mkdir(exist_ok=True)
    page.locator("#metric-charts").screenshot(path=str(SHOTS_CHARTS / "run-charts-capped.png"))
    # A refetch whose list fills the cap wins over names charted live: what a reload draws.
    page.evaluate(
        "window.stepwiseRunCharts.load([{name: 'epoch', lines: [{key: 'train', label: 'train', points: [[0, 1]]}]},"
        " {name: 'loss', lines: [{key: 'train', label: 'train', points: [[0, 1]]}]}])"
    )
    assert page.evaluate("Object.keys(window.stepwiseRunCharts.charts).sort()") == ["epoch", "loss"]
    assert page.locator("#metric-charts [data-chart='accuracy']").count() == 0
    assert page.evaluate("window.stepwiseRunCharts.hiddenCount()") == 3


LINE = "name => window.stepwiseRunCharts.charts[name].lines.train"


def test_a_long_live_line_is_thinned_keeping_its_ends(web_only, page):
    run_id = open_run_charts(page, web_only)
    assert page.evaluate("window.stepwiseRunCharts.options.maxPoints") == compare.MAX_CHART_POINTS
    cap = 10
    page.evaluate(f"window.stepwiseRunCharts.options.maxPoints = {cap}")
    for index in range(3 * cap):
        page.evaluate(METRIC_EVENT, [run_id, "lr", index])
    page.wait_for_function(f"({LINE})('lr').lastIndex === {3 * cap - 1}")
    drawn = page.evaluate(f"({LINE})('lr').dataset.data.map(p => [p.x, p.y])")
    assert len(drawn) <= 2 * cap + 1
    assert drawn[0] == [0, 0] and drawn[-1] == [3 * cap - 1, (3 * cap - 1) / 2]
    assert [x for x, _ in drawn] == sorted({x for x, _ in drawn})
    # The dropped steps leave the values too: what is held is what is drawn.
    held = page.evaluate(f"Object.keys(({LINE})('lr').values).map(Number).sort((a, b) => a - b)")
    assert held == [x for x, _ in drawn]
    page.wait_for_selector(f"#metric-charts [data-chart='lr'][data-points='{len(drawn)}']")
    # Still keyed by step: a repeated event changes nothing, a retry's value replaces the last point's.
    page.evaluate(METRIC_EVENT, [run_id, "lr", 3 * cap - 1])
    assert page.evaluate(f"({LINE})('lr').dataset.data.length") == len(drawn)
    page.evaluate(
        "([run, index]) => document.dispatchEvent(new CustomEvent('stepwise:metric',"
        " {detail: {run: run, name: 'lr', step: 'train', index: index, value: -1}}))",
        [run_id, 3 * cap - 1],
    )
    assert page.evaluate(f"({LINE})('lr').dataset.data.slice(-1)[0]") == {"x": 3 * cap - 1, "y": -1}
    assert page.evaluate(f"({LINE})('lr').dataset.data.length") == len(drawn)
    SHOTS_CHARTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS_CHARTS / "run-chart-thinned.png"), full_page=True)
