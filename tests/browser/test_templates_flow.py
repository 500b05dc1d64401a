"""Templates end to end in a real browser: alice (admin of team A) publishes a template whose
Markdown description holds a <script> and a javascript: link (both inert); bob (editor of team
B) finds it by tag, uses it with new parameter values and runs it; alice publishes a second
version; bob's clone offers it, bob reads the diff and applies it; carol (viewer of team B)
sees the clone without run or edit buttons, and gets 403 by URL."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines_ui import services
from pipelines_ui.models import Pipeline, Role, Team, Template
from runs.models import ComputeTarget, Run, RunState
from tests.browser.conftest import serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")

YAML = """
type: pipeline
display_name: counter
inputs:
  count: {type: integer, default: 3, description: How many lines}
  word: {type: string, default: hello}
jobs:
  write:
    type: command
    command: >-
      python -c "import sys; n = int(sys.argv[1]); print(n, 'lines');
      open(sys.argv[3] + '/out.txt', 'w').write((sys.argv[2] + '\\\\n') * n)"
      ${{inputs.count}} ${{inputs.word}} ${{outputs.data}}
    inputs:
      count: ${{parent.inputs.count}}
      word: ${{parent.inputs.word}}
    outputs:
      data: {type: uri_folder}
  report:
    type: command
    command: python -c "import sys; print('report v1')" ${{inputs.data}}
    inputs:
      data: ${{parent.jobs.write.outputs.data}}
"""

DESCRIPTION = (
    "Counts **lines**.\n\n"
    "<script>window.__pwned = 'script'</script>\n\n"
    "[click me](javascript:window.__pwned='link') and [the docs](https://example.com/docs)"
)


@pytest.fixture
def server(transactional_db, tmp_path):
    """daphne and one step worker on the test database, on a queue of this test's own."""
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={"queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}", "is_default": True, "aliases": ["cpu-cluster"]},
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_publish_use_run_update_and_roles(server, browser):
    team_a = Team.objects.create(name="Team A")
    team_b = Team.objects.create(name="Team B")
    alice = make_user("alice", team_a, Role.ADMIN)
    make_user("bob", team_b, Role.EDITOR)
    make_user("carol", team_b, Role.VIEWER)
    source = make_pipeline(team_a, alice, name="counter", yaml_text=YAML)

    # ---- alice publishes ----
    alice_ctx = browser.new_context()
    page = alice_ctx.new_page()
    page.set_default_timeout(30_000)
    sign_in(page, server, "alice")
    page.goto(f"{server}/pipelines/{source.pk}/")
    page.click("#publish-template")
    page.fill("#publish-form input[name=title]", "Line counter")
    page.fill("#publish-form textarea[name=description]", DESCRIPTION)
    page.fill("#publish-form input[name=tags]", "text, demo")
    page.check("#publish-form input[name=visibility][value=instance]")
    page.fill("#publish-form input[name=param_count]", "How many lines to write")
    page.click("#preview-button")
    page.wait_for_selector("#description-preview strong")
    assert page.locator("#description-preview script").count() == 0
    page.screenshot(path=str(SHOTS / "templates-publish-preview.png"), full_page=True)
    page.click("#publish-button")
    page.wait_for_selector("#template-description")
    template = Template.objects.get()
    assert page.url == f"{server}/templates/{template.pk}/"
    description = page.locator("#template-description")
    assert "<script>window.__pwned = 'script'</script>" in description.inner_text()  # shown as text
    assert description.locator("script").count() == 0
    link = description.locator("a", has_text="click me")
    assert link.get_attribute("href") is None
    link.click()
    assert description.locator("a", has_text="the docs").get_attribute("rel") == "noopener noreferrer"
    assert page.evaluate("window.__pwned === undefined")
    page.screenshot(path=str(SHOTS / "templates-detail.png"), full_page=True)

    # ---- bob finds it by tag, uses it, runs the clone ----
    bob_ctx = browser.new_context()
    bob_page = bob_ctx.new_page()
    bob_page.set_default_timeout(30_000)
    sign_in(bob_page, server, "bob")
    bob_page.click("nav >> text=Templates")
    bob_page.click("#tag-filter a[data-tag=demo]")
    bob_page.wait_for_url("**/templates/?tag=demo")
    cards = bob_page.locator(".template-card")
    assert cards.count() == 1
    assert "Line counter" in cards.inner_text() and "Team A" in cards.inner_text()
    assert cards.locator("svg").count() == 1
    bob_page.screenshot(path=str(SHOTS / "templates-gallery.png"), full_page=True)
    cards.locator("text=Use template").click()
    assert bob_page.input_value("#use-form input[name=in_count]") == "3"
    assert "How many lines to write" in bob_page.inner_text("#use-form")
    bob_page.fill("#use-form input[name=name]", "bob counter")
    bob_page.fill("#use-form input[name=in_count]", "5")
    bob_page.fill("#use-form input[name=in_word]", "bonjour")
    bob_page.screenshot(path=str(SHOTS / "templates-use.png"), full_page=True)
    bob_page.click("#create-from-template")
    bob_page.wait_for_selector("#template-origin")
    clone = Pipeline.objects.get(team=team_b)
    assert bob_page.url == f"{server}/pipelines/{clone.pk}/"
    assert "From template Line counter v1" in bob_page.inner_text("#template-origin")
    bob_page.click("#run-button")
    assert bob_page.input_value("#run-form input[name=in_count]") == "5"
    bob_page.click("#run-form button[type=submit]")
    bob_page.wait_for_url("**/runs/*/")
    bob_page.wait_for_selector("#run-state .badge[data-state=succeeded]", timeout=60_000)
    run = Run.objects.get(pipeline=clone)
    assert run.state == RunState.SUCCEEDED
    assert run.inputs["count"] == 5 and run.inputs["word"] == "bonjour"
    assert Template.objects.get().times_used == 1

    # ---- alice publishes a second version ----
    spec = services.pipeline_working_spec(pipeline=source)
    spec.jobs["report"] = replace(
        spec.jobs["report"], command="python -c \"import sys; print('report v2')\" ${{inputs.data}}"
    )
    services.pipeline_save_version(pipeline=source, spec=spec, author=alice, message="report v2")
    page.goto(f"{server}/pipelines/{source.pk}/")
    page.click("#publish-template")
    assert page.input_value("#publish-form select[name=version]") == "2"
    page.click("#publish-button")
    page.wait_for_selector("#template-versions li[data-version='2']")
    assert "Diff from previous" in page.inner_text("#template-versions")

    # ---- bob sees the newer version, reads the diff, applies it ----
    bob_page.goto(f"{server}/pipelines/{clone.pk}/")
    assert "Newer version available" in bob_page.inner_text("#template-newer")
    bob_page.click("#template-diff")
    bob_page.wait_for_selector("#yaml-diff")
    assert "report v2" in bob_page.inner_text("#yaml-diff")
    assert "step report" in bob_page.inner_text("#changed-parts").lower()
    bob_page.screenshot(path=str(SHOTS / "templates-update-diff.png"), full_page=True)
    bob_page.click("#apply-update")
    bob_page.wait_for_selector("#template-origin")
    assert "Applied Line counter v2" in bob_page.inner_text("main")
    assert "Line counter v2" in bob_page.inner_text("#template-origin")
    assert bob_page.locator("#template-newer").count() == 0
    clone.refresh_from_db()
    assert clone.origin.number == 2
    merged = services.pipeline_working_spec(pipeline=clone)
    assert "report v2" in merged.jobs["report"].command
    assert merged.inputs["count"].default == 5  # bob's values survive the update
    bob_page.screenshot(path=str(SHOTS / "templates-applied.png"), full_page=True)

    # ---- carol sees the clone, read only, and is refused by URL ----
    carol_ctx = browser.new_context()
    carol_page = carol_ctx.new_page()
    carol_page.set_default_timeout(30_000)
    sign_in(carol_page, server, "carol")
    carol_page.goto(f"{server}/pipelines/{clone.pk}/")
    assert "bob counter" in carol_page.inner_text("h1")
    for selector in ("#run-button", "#add-step", "#template-apply", "#publish-template", "#duplicate-pipeline"):
        assert carol_page.locator(selector).count() == 0, selector
    carol_page.screenshot(path=str(SHOTS / "templates-viewer.png"), full_page=True)
    for path in (f"/pipelines/{clone.pk}/run/", f"/pipelines/{clone.pk}/steps/new/", f"/templates/{template.pk}/use/"):
        response = carol_page.goto(server + path)
        assert response.status == 403, path
    # A POST by URL (apply) is refused too, with her session's CSRF token.
    status = carol_page.evaluate(
        """async (url) => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}});
            return r.status;
        }""",
        f"{server}/pipelines/{clone.pk}/template-update/",
    )
    assert status == 403
    for ctx in (alice_ctx, bob_ctx, carol_ctx):
        ctx.close()
