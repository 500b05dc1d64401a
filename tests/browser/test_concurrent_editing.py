"""Two people in two browsers editing one pipeline: a save on top of someone else's is merged
when it touches other steps, and refused with the user's input kept when it touches the same one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines_ui import services
from pipelines_ui.models import Pipeline, PipelineVersion, Role, Team
from tests.browser.conftest import sign_in
from tests.conftest import make_user
from tests.pipelines_ui.conftest import make_spec
from tests.runs.conftest import default_target

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")
ALICE_COMMAND = "python train.py --alice ${{inputs.data}} ${{inputs.epochs}} ${{outputs.model}}"
BOB_COMMAND = "python train.py --bob ${{inputs.data}} ${{inputs.epochs}} ${{outputs.model}}"


@pytest.fixture
def shared(transactional_db) -> Pipeline:
    """prep -> train, in a team where alice and bob both edit."""
    default_target()
    team = Team.objects.create(name="Data Science")
    alice = make_user("alice", team, Role.EDITOR)
    make_user("bob", team, Role.EDITOR)
    return services.pipeline_create(team=team, name="shared", user=alice, spec=make_spec())


@pytest.fixture
def two_pages(browser):
    """alice's and bob's pages, each in its own browser context (own cookies, own session)."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = [c.new_page() for c in contexts]
    for page in pages:
        page.set_default_timeout(15_000)
    yield pages
    for context in contexts:
        context.close()


def save_step(page) -> None:
    page.click("#step-form button[type=submit] >> nth=0")
    page.wait_for_load_state()


def test_same_step_conflicts_and_keeps_alices_text(web, shared, two_pages):
    alice, bob = two_pages
    sign_in(alice, web, "alice")
    sign_in(bob, web, "bob")
    step_url = f"{web}/pipelines/{shared.pk}/steps/train/"
    alice.goto(step_url)
    bob.goto(step_url)

    bob.fill("textarea[name=command]", BOB_COMMAND)
    save_step(bob)
    bob.wait_for_url(f"{web}/pipelines/{shared.pk}/")
    assert PipelineVersion.objects.filter(pipeline=shared).count() == 2

    alice.fill("textarea[name=command]", ALICE_COMMAND)
    alice.fill("input[name=display_name]", "Alice's training")
    save_step(alice)
    conflict = alice.locator("#conflict")
    conflict.wait_for()
    assert alice.url == step_url
    text = conflict.inner_text()
    assert "Not saved: bob changed the same thing while you were editing" in text
    assert "v2 was saved by bob" in text and "Step train: changed its command" in text
    assert "press “Save step” again" in text
    assert conflict.get_by_role("link", name="v2").first.get_attribute("href") == (
        f"/pipelines/{shared.pk}/versions/2/"
    )
    # Her work is still in the form, and nothing of it was saved.
    assert alice.input_value("textarea[name=command]") == ALICE_COMMAND
    assert alice.input_value("input[name=display_name]") == "Alice's training"
    assert alice.input_value("input[name=base_version]") == "2"
    assert PipelineVersion.objects.filter(pipeline=shared).count() == 2
    alice.screenshot(path=str(SHOTS / "stepwise-edit-conflict.png"), full_page=False)

    # The link shows what bob saved.
    conflict.get_by_role("link", name="v2").first.click()
    alice.wait_for_url(f"{web}/pipelines/{shared.pk}/versions/2/")
    assert "--bob" in alice.inner_text("body")
    alice.go_back()
    alice.wait_for_selector("#conflict")

    # Saving again is the deliberate overwrite.
    alice.fill("textarea[name=command]", ALICE_COMMAND)
    save_step(alice)
    alice.wait_for_url(f"{web}/pipelines/{shared.pk}/")
    assert "Saved step train." in alice.inner_text("body")
    shared.refresh_from_db()
    assert shared.latest_version.number == 3
    assert services.version_spec_with_files(shared.latest_version).jobs["train"].command == ALICE_COMMAND


def test_other_step_is_merged_with_a_calm_message(web, shared, two_pages):
    alice, bob = two_pages
    sign_in(alice, web, "alice")
    sign_in(bob, web, "bob")
    alice.goto(f"{web}/pipelines/{shared.pk}/steps/train/")
    bob.goto(f"{web}/pipelines/{shared.pk}/steps/prep/")

    bob.fill("input[name=display_name]", "Prepare (bob)")
    save_step(bob)
    bob.wait_for_url(f"{web}/pipelines/{shared.pk}/")

    alice.fill("textarea[name=command]", ALICE_COMMAND)
    save_step(alice)
    alice.wait_for_url(f"{web}/pipelines/{shared.pk}/")
    message = alice.locator(".alert-success").inner_text()
    assert "Saved step train. It is v3: merged with v2 by bob" in message
    assert "both are kept" in message
    alice.screenshot(path=str(SHOTS / "stepwise-edit-merged.png"), full_page=False)
    spec = services.version_spec_with_files(Pipeline.objects.get(pk=shared.pk).latest_version)
    assert spec.jobs["prep"].display_name == "Prepare (bob)" and spec.jobs["train"].command == ALICE_COMMAND
