"""A run page following a step that prints a million lines: the head whole, then windows of the
newest lines between markers that count what was left out, the last line at the end, the view
bounded, and the whole log one link away."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pipelines_ui.models import Team
from runs.models import ComputeTarget
from runs.services import run_create
from tests.browser.conftest import serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINES = 1_000_000

# The step waits before it prints, so the page is open (and subscribed) when its lines come.
LOUD_YAML = f"""
type: pipeline
jobs:
  loud:
    type: command
    command: python -c "import time; time.sleep(3); [print(f'line {{i}}') for i in range({LINES})]"
"""

# Walks the view from its end: every line must be where its number says, markers counting the rest.
CHECK_VIEW = """(last) => {
  const items = Array.from(document.querySelectorAll('#log > *')).reverse();
  let seq = last;
  for (const el of items) {
    if (el.classList.contains('log-omitted')) { seq -= parseInt(el.getAttribute('data-count'), 10); continue; }
    seq -= 1;
    if (el.textContent !== 'line ' + seq) return 'line ' + seq + ' reads ' + el.textContent;
  }
  return seq >= 0 ? 'ok' : 'below zero: ' + seq;
}"""


VIEW_STATE = """() => ({
  count: document.getElementById('log-count').textContent,
  items: document.querySelectorAll('#log > *').length,
  last: Array.from(document.querySelectorAll('#log > *')).slice(-3).map(e => e.className + ': ' + e.textContent),
})"""


@pytest.fixture
def server(transactional_db, tmp_path):
    """daphne with the real ASGI app and one step worker, both on the test database."""
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={"queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}", "is_default": True, "aliases": ["cpu-cluster"]},
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_a_page_following_a_million_line_step_stays_bounded_and_marks_what_it_leaves_out(server, page):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice, name="loud", yaml_text=LOUD_YAML)
    run = run_create(version=pipeline.latest_version, user=alice)
    page.set_default_timeout(30_000)
    sign_in(page, server, "alice")
    page.goto(f"{server}/runs/{run.pk}/steps/loud/")
    page.wait_for_selector("body[data-live=open]")

    page.wait_for_selector("#run-state .badge[data-state=succeeded]", timeout=180_000)
    try:
        page.wait_for_function(f"() => document.getElementById('log-count').textContent === '{LINES:,} lines'")
        page.wait_for_function(
            "() => { const lines = document.querySelectorAll('#log .log-line');"
            f" return lines.length && lines[lines.length - 1].textContent === 'line {LINES - 1}'; }}"
        )
    except PlaywrightTimeout:
        view = page.evaluate(VIEW_STATE)
        raise AssertionError(f"the view did not reach the log's end: {view}") from None
    assert page.evaluate(CHECK_VIEW, LINES) == "ok"
    assert page.locator("#log > *").count() <= 5000 + page.locator("#log .log-omitted").count()
    marker = page.locator("#log .log-omitted").first
    assert " lines omitted: download the full log" in marker.inner_text()
    href = marker.locator("a").get_attribute("href")
    assert href == f"/runs/{run.pk}/steps/loud/log/?download=1"

    body = page.request.get(server + href).body()
    assert body.count(b"\n") == LINES and body.endswith(f"line {LINES - 1}\n".encode())
