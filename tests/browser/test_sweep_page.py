"""A sweep step's run page: the trials table fills live and the best trial is highlighted in it
and in the parallel-coordinates plot."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from pipelines_ui.models import Team
from runs.models import ComputeTarget, Isolation, SweepTrial
from runs.services import run_create
from tests.browser.conftest import serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-sweep")

SWEEP_YAML = """
type: pipeline
jobs:
  search:
    type: sweep
    sampling_algorithm: grid
    trial:
      command: >-
        python -c "import sys, time; from stepwise import log_metric;
        x, shape = int(sys.argv[1]), sys.argv[2];
        score = -(x - 3) ** 2 - {'flat': 1.0, 'round': 0.0, '<b>sharp</b>': 2.0}[shape];
        [(log_metric('score', score * (i + 1) / 3, step=i), time.sleep(0.3)) for i in range(3)]"
        ${{inputs.x}} ${{inputs.shape}}
      inputs:
        x: {type: integer}
        shape: {type: string}
    search_space:
      x: {type: choice, values: [1, 2, 3, 4]}
      shape: {type: choice, values: [flat, round, "<b>sharp</b>"]}
    objective: {primary_metric: score, goal: maximize}
    limits: {max_total_trials: 12, max_concurrent_trials: 3}
"""


@pytest.fixture
def server(transactional_db, tmp_path):
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


def test_the_trials_table_fills_live_and_highlights_the_best(server, page):
    SHOTS.mkdir(exist_ok=True)
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    run = run_create(version=make_pipeline(team, alice, name="sweep", yaml_text=SWEEP_YAML).latest_version, user=alice)
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, server, "alice")
    page.goto(server + reverse("run_step", args=[run.pk, "search"]))
    page.wait_for_selector("body[data-live=open]")
    page.evaluate("window.__notReloaded = true")
    # Rows come while the sweep runs, without a reload.
    page.wait_for_selector("#part-trials tr[data-trial='1']")
    page.wait_for_selector("#run-state .badge[data-state=succeeded]")
    page.wait_for_selector("#part-trials tr.trial-best")
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#part-trials tbody tr").count() == 12
    best = SweepTrial.objects.get(step_run__run=run, is_best=True)
    assert best.params == {"x": 3, "shape": "round"}
    assert page.get_attribute("#part-trials tr.trial-best", "data-trial") == str(best.number)
    # User text stays text, in the table and in the plot's tooltips.
    assert page.locator("#part-trials code", has_text="<b>sharp</b>").count() == 4
    plot = page.evaluate(
        """() => {
          const chart = Chart.getChart(document.querySelector('[data-sweep-plot] canvas'));
          return chart && {labels: chart.data.labels, widths: chart.data.datasets.map(d => d.borderWidth)};
        }"""
    )
    assert plot["labels"] == ["x", "shape", "score"]
    assert sorted(plot["widths"]) == [1] * 11 + [3]
    page.screenshot(path=str(SHOTS / "sweep-trials.png"), full_page=True)
    assert errors == []
