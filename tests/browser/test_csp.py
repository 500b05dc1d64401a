"""The main pages in a real browser under the Content-Security-Policy: nothing is blocked, and the
run page still updates live (its script, styles and websocket are all allowed)."""

from __future__ import annotations

import pytest

from pipelines_ui.models import Team
from runs.models import Run
from tests.browser.conftest import sign_in
from tests.browser.test_run_live import LIVE_YAML, server  # noqa: F401 - the fixture
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded before any page script runs; Playwright injects it outside the page's policy.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}: ${e.sample}`);
});
"""


def test_main_pages_break_no_rule_and_the_run_page_stays_live(server, page):  # noqa: F811
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    alice.is_staff = alice.is_superuser = True
    alice.save()
    pipeline = make_pipeline(team, alice, name="live demo", yaml_text=LIVE_YAML)
    page.set_default_timeout(30_000)
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(RECORD_VIOLATIONS)

    def assert_nothing_blocked(where: str) -> None:
        assert page.evaluate("window.__cspViolations") == [], where
        assert not [text for text in console if "Content Security Policy" in text], where

    sign_in(page, server, "alice")
    assert_nothing_blocked("sign-in")

    # The list: choosing a team filters at once (was an inline onchange).
    page.goto(f"{server}/pipelines/")
    with page.expect_navigation():
        page.select_option("select#team", str(team.pk))
    assert f"team={team.pk}" in page.url
    assert_nothing_blocked("pipeline list")

    # The editor, and a step's page with its node marked in the graph (was an inline <style>).
    page.goto(f"{server}/pipelines/{pipeline.pk}/")
    page.wait_for_selector(".dag-svg svg")
    assert_nothing_blocked("editor")
    page.goto(f"{server}/pipelines/{pipeline.pk}/steps/train/")
    page.wait_for_selector(".dag-svg g.node.dag-current")
    assert_nothing_blocked("step editor")

    page.goto(f"{server}/admin/")
    assert_nothing_blocked("admin")

    # A run, watched live over the websocket.
    page.goto(f"{server}/pipelines/{pipeline.pk}/run/")
    page.click("#run-form button[type=submit]")
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get()
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("body[data-live=open]")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#log .log-line')).some(l => l.textContent.includes('preparing'))"
    )
    page.wait_for_function(
        """() => {
          const nodes = document.querySelectorAll('#dag g.node.step');
          return nodes.length === 3 && Array.from(nodes).every(n => n.classList.contains('state-succeeded'));
        }""",
        timeout=60_000,
    )
    page.wait_for_function("() => document.getElementById('progress-text').textContent.trim() === '3 / 3 steps'")
    assert page.evaluate("window.__notReloaded") is True
    # The bars are drawn by SVG attributes, which the policy allows where it refuses style attributes.
    track = page.eval_on_selector("#part-progress .progress", "e => e.getBoundingClientRect().width")
    done = page.eval_on_selector("#part-progress svg.seg-done", "e => e.getBoundingClientRect().width")
    assert done == pytest.approx(track, abs=1)
    bars = page.eval_on_selector_all("#part-timeline rect.tl-bar", "els => els.map(e => e.getBBox().width)")
    assert len(bars) == 3 and all(width > 0 for width in bars)
    swatches = page.eval_on_selector_all(".legend-swatch rect", "els => els.map(e => e.getAttribute('fill'))")
    assert len(swatches) >= 5 and all(swatches)
    assert_nothing_blocked(f"run {run.pk}")

    page.goto(f"{server}/runs/")
    assert_nothing_blocked("run list")
