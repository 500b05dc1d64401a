"""The version compare page with code: a screenshot of changed, added and removed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui.models import Team
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.pipelines_ui.test_version_code_diff import save_code
from tests.runs.conftest import make_pipeline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots19")


def test_the_diff_page_shows_code(web, page):
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team)
    pipeline = make_pipeline(team, alice)
    first = save_code(pipeline, alice, "train", {"train.py": b"import sys\n\nEPOCHS = 3\nprint('training')\n"})
    second = save_code(
        pipeline, alice, "train", {"train.py": b"import sys\n\nEPOCHS = 5\nprint('training')\n", "utils.py": b"X = 1\n"}
    )
    page.set_default_timeout(20_000)
    sign_in(page, web, "alice")
    page.goto(f"{web}/pipelines/{pipeline.pk}/versions/{second}/diff/?against={first}")
    files = page.locator("#code-diff .code-file")
    assert files.count() == 2
    assert "+EPOCHS = 5" in page.inner_text('#code-diff .code-file[data-path="code/train/train.py"]')
    assert page.get_attribute('#code-diff .code-file[data-path="code/train/utils.py"]', "data-status") == "added"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "version-diff-code.png"), full_page=True)
