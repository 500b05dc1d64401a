"""Start a run in the browser and watch it finish over the websocket, without reloading."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipelines_ui.models import Team
from runs.models import ComputeTarget, Run, RunState
from tests.browser.conftest import serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")

# prep waits before it logs, so the page is open (and subscribed) when its lines come.
LIVE_YAML = """
type: pipeline
display_name: live demo
inputs:
  epochs: {type: integer, default: 3, description: How many epochs to train}
  mode: {type: string, enum: [fast, full], default: fast}
jobs:
  prep:
    type: command
    command: >-
      python -c "import sys, time; time.sleep(2); print('preparing rows in', sys.argv[1], 'mode', flush=True);
      time.sleep(0.5); open(sys.argv[2] + '/rows.csv', 'w').write('a,b\\\\n1,2\\\\n')"
      ${{inputs.mode}} ${{outputs.data}}
    inputs:
      mode: ${{parent.inputs.mode}}
    outputs:
      data: {type: uri_folder}
  train:
    type: command
    command: >-
      python -c "import sys, time, stepwise;
      [(stepwise.log_metric('loss', 1.0 / (e + 1), step=e), print('epoch', e, flush=True), time.sleep(0.3))
      for e in range(int(sys.argv[1]))]; open(sys.argv[3], 'w').write('model')"
      ${{inputs.epochs}} ${{inputs.data}} ${{outputs.model}}
    inputs:
      epochs: ${{parent.inputs.epochs}}
      data: ${{parent.jobs.prep.outputs.data}}
    outputs:
      model: {type: uri_file}
  report:
    type: command
    command: python -c "import sys; print('model is', open(sys.argv[1]).read())" ${{inputs.model}}
    inputs:
      model: ${{parent.jobs.train.outputs.model}}
"""


@pytest.fixture
def server(transactional_db, tmp_path):
    """daphne with the real ASGI app and one step worker, both on the test database."""
    # A queue of our own: stale jobs on the shared default queue must not reach this worker.
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={"queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}", "is_default": True, "aliases": ["cpu-cluster"]},
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_a_run_turns_green_live(server, page):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="live demo", yaml_text=LIVE_YAML)
    page.set_default_timeout(30_000)

    sign_in(page, server, "alice")

    page.goto(f"{server}/pipelines/{pipeline.pk}/run/")
    page.fill("input[name=in_epochs]", "4")
    page.screenshot(path=str(SHOTS / "stepwise-run-form.png"), full_page=True)
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get()
    assert page.url == f"{server}/runs/{run.pk}/"
    page.evaluate("window.__notReloaded = true")

    # The page was rendered before prep logged anything; its line arrives over the socket.
    page.wait_for_selector("body[data-live=open]")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#log .log-line')).some(l => l.textContent.includes('preparing'))"
    )
    page.screenshot(path=str(SHOTS / "stepwise-run-running.png"), full_page=True)

    page.wait_for_function(
        """() => {
          const nodes = document.querySelectorAll('#dag g.node.step');
          return nodes.length === 3 && Array.from(nodes).every(n => n.classList.contains('state-succeeded'));
        }""",
        timeout=60_000,
    )
    fills = page.eval_on_selector_all("#dag g.node.step path", "els => els.map(e => e.getAttribute('fill'))")
    assert set(fills) == {"#c3e6cb"}
    page.wait_for_selector("#run-state .badge[data-state=succeeded]")
    page.wait_for_function("() => document.getElementById('progress-text').textContent.trim() === '3 / 3 steps'")
    assert page.evaluate("window.__notReloaded") is True
    assert "preparing rows in fast mode" in page.inner_text("#log")
    assert "<" not in page.eval_on_selector("#log", "e => e.innerHTML").replace('<div class="log-line">', "").replace(
        "</div>", ""
    )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    page.screenshot(path=str(SHOTS / "stepwise-run-finished.png"), full_page=True)

    # The train step's page: its log, metrics sparkline and output download.
    page.goto(f"{server}/runs/{run.pk}/steps/train/")
    page.wait_for_selector(".sparkline svg polyline")
    assert "epoch 3" in page.inner_text("#log")
    page.screenshot(path=str(SHOTS / "stepwise-run-step.png"), full_page=True)

    page.goto(server + "/runs/")
    assert page.locator("#runs-table tbody tr").count() == 1
    page.screenshot(path=str(SHOTS / "stepwise-run-list.png"), full_page=True)
