"""The run page's live updates end exactly where a reload starts, whatever order events come in.

The run's real events (recorded from its transitions) are replayed into the page through a stand-in
websocket, shuffled and repeated, while the page's first refreshes fail or read older rows; the
page's parts and graph must then equal those of a fresh load of the same URL.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from pipelines_ui.models import Team
from runs import broadcast
from runs.models import Run, RunState, StepRun, StepState
from runs.transitions import run_transition, step_run_fail, step_run_transition
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline, make_run, set_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots19")

# A websocket that never connects anywhere: the test hands the page its messages.
FAKE_SOCKET = """
window.__sockets = [];
window.WebSocket = function (url) {
  this.url = url;
  this.readyState = 0;
  window.__sockets.push(this);
  var self = this;
  setTimeout(function () { self.readyState = 1; if (self.onopen) self.onopen({}); }, 0);
};
window.WebSocket.OPEN = 1;
window.WebSocket.prototype.send = function () {};
window.WebSocket.prototype.close = function () {};
window.__deliver = function (messages) {
  var socket = window.__sockets[window.__sockets.length - 1];
  messages.forEach(function (m) { socket.onmessage({ data: JSON.stringify(m) }); });
};
"""

PARTS = ["header", "progress", "steps", "timeline", "step_detail", "metrics"]


def page_state(page) -> dict:
    """What the user sees: each server-rendered part (whitespace folded), the graph's node states."""
    parts = {}
    for key in PARTS:
        html = page.eval_on_selector(f"#part-{key}", "e => e.innerHTML")
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)  # masked anew on every render
        parts[key] = re.sub(r"\s+", " ", html).strip()
    nodes = page.eval_on_selector_all(
        "#dag g.node.step",
        "els => els.map(e => [e.id, e.getAttribute('data-state'),"
        " e.querySelector('path, polygon').getAttribute('fill')])",
    )
    return {"parts": parts, "nodes": sorted(nodes), "log": page.inner_text("#log")}


def transition(step: StepRun, *states: str, **fields) -> StepRun:
    for to in states:
        step.refresh_from_db()
        assert step_run_transition(step_run=step, to=to, **(fields if to == states[-1] else {}))
    return step


@pytest.mark.parametrize("seed", [1, 2])
def test_live_updates_converge_to_a_reload(web, page, browser, monkeypatch, seed):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="sync demo")  # prep -> train -> report
    # Nothing enqueues its steps: the test moves them.
    monkeypatch.setattr("runs.orchestrator.run_advance", lambda run_id: None)
    run = make_run(pipeline, alice)
    events: list[dict] = []
    monkeypatch.setattr(broadcast, "send", lambda run_id, payload, wait=False: events.append(payload))
    set_step(run, "train", max_retries=1)

    # Before the page opens: prep done, train running.
    run_transition(run=Run.objects.get(pk=run.pk), to=RunState.RUNNING)
    transition(StepRun.objects.get(run=run, name="prep"), "queued", "running")
    transition(StepRun.objects.get(run=run, name="prep"), "succeeded", exit_code=0)
    transition(StepRun.objects.get(run=run, name="train"), "queued", "running")

    page.set_default_timeout(20_000)
    page.add_init_script(FAKE_SOCKET)
    sign_in(page, web, "alice")
    url = f"{web}/runs/{run.pk}/steps/train/"
    page.goto(url)
    page.wait_for_selector("body[data-live=open]")

    # The rest of the run, written to the database before any of its events reaches the page.
    train = StepRun.objects.get(run=run, name="train")
    assert step_run_fail(step_run=train, reason="exit code 1", exit_code=1)  # and queued again: attempt 2
    transition(StepRun.objects.get(run=run, name="train"), "running")
    transition(StepRun.objects.get(run=run, name="train"), "succeeded", exit_code=0)
    transition(StepRun.objects.get(run=run, name="report"), "queued", "running")
    transition(StepRun.objects.get(run=run, name="report"), "succeeded", exit_code=0)
    run_transition(run=Run.objects.get(pk=run.pk), to=RunState.SUCCEEDED)
    assert StepRun.objects.filter(run=run, state=StepState.SUCCEEDED).count() == 3

    # The first refresh fails (a busy server), the second reads the rows of before (a refresh
    # that raced the commits): neither may be the page's last word.
    # The page still shows the rows of before: they are the stale refresh's answer.
    stale = {
        "run_state": "running",
        "states": {"prep": ["succeeded", 1], "train": ["running", 1], "report": ["pending", 0]},
        "now": "2026-01-01T00:00:00+00:00",
        "parts": {key: page.eval_on_selector(f"#part-{key}", "e => e.innerHTML") for key in PARTS},
    }
    answers = iter([{"status": 500, "body": "busy"}, {"status": 200, "body": json.dumps(stale)}])

    def parts_route(route):
        answer = next(answers, None)
        if answer is None:
            route.continue_()
        else:
            route.fulfill(content_type="application/json", **answer)

    page.route(re.compile(r".*/runs/\d+/parts/.*"), parts_route)

    rng = random.Random(seed)
    replay = events + rng.sample(events, len(events) // 2)
    rng.shuffle(replay)
    page.evaluate("messages => window.__deliver(messages)", replay)
    page.wait_for_selector("body[data-sync=current]")
    live = page_state(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"run-sync-live-{seed}.png"), full_page=True)

    fresh = browser.new_page(storage_state=page.context.storage_state())
    fresh.add_init_script(FAKE_SOCKET)
    fresh.goto(url)
    fresh.wait_for_selector("body[data-live=open]")
    reloaded = page_state(fresh)
    fresh.close()

    for key in PARTS:
        assert live["parts"][key] == reloaded["parts"][key], key
    assert live == reloaded
    assert "Cancel" not in live["parts"]["header"]
    assert 'data-state="succeeded"' in live["parts"]["header"]
    assert [n[1] for n in live["nodes"]] == ["succeeded"] * 3
