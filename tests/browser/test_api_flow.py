"""The API as a user meets it: a token made on its page, an endpoint published from a pipeline,
the page's own curl line run in a shell, and the run it starts watched live."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from pipelines_ui.api.models import EndpointCall
from pipelines_ui.models import Team
from runs.models import ComputeTarget, Run, RunState
from tests.browser.conftest import serve_app, sign_in
from tests.browser.test_run_live import LIVE_YAML
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")


@pytest.fixture
def server(transactional_db, tmp_path):
    ComputeTarget.objects.update(is_default=False)
    ComputeTarget.objects.update_or_create(
        name="local",
        defaults={"queue": f"stepwise-browser-{uuid.uuid4().hex[:8]}", "is_default": True, "aliases": ["cpu-cluster"]},
    )
    with serve_app(tmp_path, worker=True) as base:
        yield base


def test_a_curl_from_the_endpoint_page_starts_a_run_seen_live(server, page):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team, "admin")
    pipeline = make_pipeline(team, alice, name="live demo", yaml_text=LIVE_YAML)
    page.set_default_timeout(30_000)
    sign_in(page, server, "alice")

    # A token, shown once.
    page.goto(f"{server}/account/tokens/")
    page.fill("input[name=name]", "nightly CI")
    page.select_option("select[name=team]", label=team.name)
    page.check("input[name=scopes][value=read]")
    page.check("input[name=scopes][value=run]")
    page.click("#token-form button[type=submit]")
    token = page.input_value("#new-token-value")
    assert token.startswith("swt_")
    page.screenshot(path=str(SHOTS / "stepwise-token-created.png"), full_page=True)
    page.reload()
    assert page.locator("#new-token-value").count() == 0 and token not in page.content()

    # An endpoint, published from the pipeline's page.
    page.goto(f"{server}/pipelines/{pipeline.pk}/")
    page.click("#publish-endpoint")
    page.fill("input[name=name]", "nightly-score")
    page.click("#endpoint-form button[type=submit]")
    page.wait_for_url("**/endpoints/*/")
    curl = page.inner_text("#curl-example")
    assert "/api/v1/endpoints/Data%20Science/nightly-score/runs/" in curl
    page.screenshot(path=str(SHOTS / "stepwise-endpoint.png"), full_page=True)

    # The shown command, as a user pastes it into a shell, with their token in STEPWISE_TOKEN.
    result = subprocess.run(
        ["bash", "-c", curl.replace('epochs": 3', 'epochs": 2') + " --fail-with-body --silent"],
        env={**os.environ, "STEPWISE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    run = Run.objects.get(pk=body["id"])
    assert run.inputs["epochs"] == 2 and body["url"].endswith(f"/runs/{run.pk}/")

    # The run page shows it live: prep waits two seconds, so the page is open before it ends.
    page.goto(body["url"])
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("body[data-live=open]")
    page.wait_for_selector("#run-state .badge[data-state=succeeded]", timeout=60_000)
    assert page.evaluate("window.__notReloaded") is True
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED and run.created_by == alice

    # The endpoint's page lists the call with the token's name.
    call = EndpointCall.objects.get()
    assert call.run == run and call.token_name == "nightly CI"
    page.goto(f"{server}/endpoints/{call.endpoint_id}/")
    assert "nightly CI" in page.inner_text("#calls") and f"#{run.pk}" in page.inner_text("#calls")
    page.screenshot(path=str(SHOTS / "stepwise-endpoint-calls.png"), full_page=True)
