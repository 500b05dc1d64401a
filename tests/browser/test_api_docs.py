"""The API's docs page works offline under the Content-Security-Policy: Swagger UI draws every operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import sign_in
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_lists_the_operations(web, page, team):
    make_user("alice", team, "admin")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, web, "alice")
    page.goto(f"{web}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() >= 15
    assert "/api/v1/endpoints/{team}/{name}/runs/" in page.inner_text(".swagger-ui")
    assert all(url.startswith(web) for url in requests), [u for u in requests if not u.startswith(web)]
    assert not [v for v in violations if "script" in v], violations
    page.screenshot(path=str(Path("/tmp") / "stepwise-api-docs.png"), full_page=False)
