"""The authoring flows in a real browser: build a pipeline step by step, edit it from the
graph, escape what users type, and import a zip, a broken YAML or one too large to read."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines_ui.models import Pipeline, PipelineVersion, Role, Team
from tests.browser.conftest import ROOT, serve_app, sign_in
from tests.conftest import make_user
from tests.runs.conftest import default_target

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp")
XSS = "<script>alert(1)</script>"

PREP_PY = """import pathlib, sys

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "rows.csv").write_text("a,b\\n1,2\\n")
"""

BROKEN_YAML = """type: pipeline
display_name: broken
jobs:
  prep:
    type: command
    command: python prep.py ${{inputs.rows}} ${{outputs.data}}
    outputs:
      data: {type: uri_folder}
  train:
    type: command
    command: python train.py ${{inputs.data}}
    inputs:
      data: ${{parent.jobs.nowhere.outputs.data}}
"""


@pytest.fixture
def member(transactional_db):
    """An editor of the one team, with the default compute target in place."""
    default_target()
    team = Team.objects.create(name="Data Science")
    return make_user("bob", team, Role.EDITOR)


@pytest.fixture
def dialogs(page) -> list[str]:
    """Messages of every alert/confirm/prompt the page opens (dismissed)."""
    seen: list[str] = []

    def on_dialog(dialog):
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"stepwise-authoring-{name}.png"), full_page=True)


def svg_texts(page, selector: str = "#dag svg") -> list[str]:
    return page.eval_on_selector_all(f"{selector} text", "els => els.map(e => e.textContent)")


def create_pipeline(page, web: str, name: str) -> Pipeline:
    page.goto(web + "/pipelines/new/")
    page.fill("input[name=name]", name)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/steps/new/")
    return Pipeline.objects.get(name=name)


def test_build_a_pipeline_step_by_step(web, member, page, dialogs):
    page.set_default_timeout(15_000)
    sign_in(page, web, "bob")

    # The empty state offers both ways in.
    page.goto(web + "/pipelines/")
    empty = page.locator("#empty-state")
    assert "No pipelines yet" in empty.inner_text()
    assert empty.get_by_role("link", name="+ New pipeline").is_visible()
    assert empty.get_by_role("link", name="Import YAML").is_visible()
    shot(page, "empty")

    empty.get_by_role("link", name="+ New pipeline").click()
    page.wait_for_url("**/pipelines/new/")
    page.fill("input[name=name]", "iris by hand")
    page.fill("textarea[name=description]", "Built in the browser.")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/steps/new/")
    pipeline = Pipeline.objects.get(name="iris by hand")
    assert pipeline.latest_version is None

    # Step 1: prepare, writing the folder output `data`, with its code typed in the page.
    page.fill("input[name=name]", "prepare")
    page.fill("textarea[name=command]", "python prep.py ${{outputs.data}}")
    page.fill("input[name=code-0-path]", "prep.py")
    page.fill("textarea[name=code-0-content]", PREP_PY)
    page.click("[data-formset-add=out]")
    page.fill("input[name=out-0-name]", "data")
    assert page.input_value("select[name=out-0-type]") == "uri_folder"
    shot(page, "step-prepare")
    page.click("#step-form button[type=submit] >> nth=0")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/")
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1
    assert "Saved step prepare." in page.inner_text("body")

    # Step 2: train, its input bound to prepare's output picked from the list.
    page.click("#add-step")
    page.wait_for_url("**/steps/new/")
    page.fill("input[name=name]", "train")
    page.fill(
        "textarea[name=command]",
        "python -c \"import sys; print(open(sys.argv[1] + '/rows.csv').read())\" ${{inputs.data}}",
    )
    page.check("input[name=code-0-DELETE]")
    page.click("[data-formset-add=in]")
    page.fill("input[name=in-0-name]", "data")
    page.select_option("select[name=in-0-type]", "uri_folder")
    options = page.eval_on_selector_all("select[name=in-0-source] option", "os => os.map(o => o.textContent)")
    assert any("prepare" in o and "data" in o for o in options), options
    page.select_option("select[name=in-0-source]", "output:prepare.data")
    # The typed-value box is read-only once the input comes from elsewhere.
    assert page.eval_on_selector("input[name=in-0-value]", "e => e.readOnly") is True
    shot(page, "step-train")
    page.click("#step-form button[type=submit] >> nth=0")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/")
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 2

    # The graph beside the editor: both steps and the edge between them.
    page.wait_for_selector("#dag svg")
    assert page.locator("#dag g.node.step").count() == 2
    texts = svg_texts(page)
    assert "prepare" in texts and "train" in texts
    assert "data → data" in texts
    assert page.locator("#steps-card .step-item").count() == 2
    shot(page, "editor")

    # Clicking train's node opens its step form.
    page.click("#dag #step-train a")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/steps/train/")
    assert page.input_value("input[name=name]") == "train"
    assert page.input_value("select[name=in-0-source]") == "output:prepare.data"

    # An invalid change: the error sits on the command field, the text typed stays, nothing is saved.
    bad = "python train.py ${{inputs.nope}}"
    page.fill("textarea[name=command]", bad)
    page.click("#step-form button[type=submit] >> nth=0")
    page.wait_for_selector("textarea[name=command].is-invalid")
    assert page.url.endswith(f"/pipelines/{pipeline.pk}/steps/train/")
    command_group = page.locator("textarea[name=command]").locator("xpath=..")
    assert "nope" in command_group.inner_text()
    assert page.input_value("textarea[name=command]") == bad
    assert page.input_value("select[name=in-0-source]") == "output:prepare.data"
    shot(page, "step-invalid")
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 2

    # The versions page: two versions, each with its graph.
    page.click("a.nav-link:has-text('Versions')")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/versions/")
    assert page.locator(".version-card").count() == 2
    assert page.locator(".version-card .dag-svg svg").count() == 2
    assert page.locator("#dag-v2 g.node.step").count() == 2
    assert page.locator("#dag-v1 g.node.step").count() == 1
    shot(page, "versions")
    assert dialogs == []


def test_a_display_name_with_markup_shows_literally(web, member, page, dialogs):
    page.set_default_timeout(15_000)
    sign_in(page, web, "bob")
    pipeline = create_pipeline(page, web, "escaping")

    page.fill("input[name=name]", "sneaky")
    page.fill("input[name=display_name]", XSS)
    page.fill("textarea[name=command]", "echo hi")
    page.check("input[name=code-0-DELETE]")
    page.click("#step-form button[type=submit] >> nth=0")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/")
    page.wait_for_selector("#dag svg")

    assert XSS in page.inner_text("#steps-card")
    assert XSS in svg_texts(page)
    assert page.locator("script:has-text('alert(1)')").count() == 0
    shot(page, "escaped-editor")

    # The step page (its title, form and graph) and the versions page show it literally too.
    page.click("#dag #step-sneaky a")
    page.wait_for_url("**/steps/sneaky/")
    assert page.input_value("input[name=display_name]") == XSS
    assert XSS in svg_texts(page)
    assert XSS in page.title()
    page.goto(f"{web}/pipelines/{pipeline.pk}/versions/")
    assert XSS in svg_texts(page, "#dag-v1 svg")
    page.goto(f"{web}/pipelines/{pipeline.pk}/versions/1/")
    assert XSS in page.inner_text("body")
    assert page.locator("script:has-text('alert(1)')").count() == 0
    assert dialogs == []


def iris_zip() -> bytes:
    folder = ROOT / "examples" / "sklearn-iris"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def test_import_a_zip_and_a_broken_yaml(web, member, page, dialogs):
    page.set_default_timeout(15_000)
    sign_in(page, web, "bob")

    page.goto(web + "/pipelines/")
    page.locator("#empty-state").get_by_role("link", name="Import YAML").click()
    page.wait_for_url("**/pipelines/import/")
    page.set_input_files(
        "input[name=file]", files=[{"name": "sklearn-iris.zip", "mimeType": "application/zip", "buffer": iris_zip()}]
    )
    page.click("main form button[type=submit]")
    page.wait_for_url("**/pipelines/*/")
    pipeline = Pipeline.objects.get()
    assert page.url == f"{web}/pipelines/{pipeline.pk}/"
    assert pipeline.name == "sklearn-iris"
    page.wait_for_selector("#dag svg")
    assert page.locator("#dag g.node.step").count() == 3
    assert page.locator("#steps-card .step-item").count() == 3
    assert "Imported sklearn-iris as version 1." in page.inner_text("body")
    shot(page, "imported")

    # Its steps open from the graph too; the step keeps its component's code files.
    page.click("#dag #step-train a")
    page.wait_for_url(f"**/pipelines/{pipeline.pk}/steps/train/")
    assert page.input_value("input[name=display_name]") == "Train a decision tree"
    # Rows looked up by name: PostgreSQL's jsonb does not keep the order of a version's inputs.
    sources = page.eval_on_selector_all(
        "tr.step-input",
        """rows => Object.fromEntries(rows.map(r => [
            r.querySelector('input[name$=-name]').value, r.querySelector('select[name$=-source]').value]))""",
    )
    assert sources["train_data"] == "output:prep.train_data", sources
    assert sources["max_depth"] == "input:max_depth", sources
    paths = page.eval_on_selector_all("input[name$=-path]", "els => els.map(e => e.value)")
    assert "train.py" in paths, paths
    shot(page, "imported-step")

    # A broken YAML: every problem listed with where it is, and no pipeline created.
    page.goto(web + "/pipelines/import/")
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "broken.yml", "mimeType": "application/x-yaml", "buffer": BROKEN_YAML.encode()}],
    )
    page.click("main form button[type=submit]")
    page.wait_for_selector("#problems")
    assert page.url.endswith("/pipelines/import/")
    items = page.locator("#problems li").all_inner_texts()
    assert len(items) == 2, items
    nowhere = next(i for i in items if "nowhere" in i)
    assert "broken.yml:" in nowhere and "job train" in nowhere and "inputs.data" in nowhere, nowhere
    rows = next(i for i in items if "rows" in i)
    assert "broken.yml:" in rows and "job prep" in rows and "command" in rows, rows
    assert "nothing was imported" in page.inner_text("#problems")
    shot(page, "import-broken")
    assert Pipeline.objects.count() == 1
    assert dialogs == []


@pytest.fixture
def small_web(transactional_db, tmp_path, monkeypatch) -> Iterator[str]:
    """The app with STEPWISE_UPLOAD_MAX_BYTES=100000: request bodies over 1.2 MiB are refused unread."""
    monkeypatch.setenv("STEPWISE_UPLOAD_MAX_BYTES", "100000")
    with serve_app(tmp_path) as base:
        yield base


def test_an_upload_too_large_to_read_gets_a_readable_refusal(small_web, member, page, dialogs):
    page.set_default_timeout(15_000)
    sign_in(page, small_web, "bob")
    page.goto(small_web + "/pipelines/import/")
    page.set_input_files(
        "input[name=file]", files=[{"name": "big.zip", "mimeType": "application/zip", "buffer": os.urandom(4 << 20)}]
    )
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    text = page.inner_text("body")
    assert "413 Content Too Large" in text
    assert "Request body over 1.2 MiB: Stepwise takes uploads of up to 97.7 KiB (STEPWISE_UPLOAD_MAX_BYTES)" in text
    shot(page, "import-too-large")
    assert not Pipeline.objects.exists()
    assert dialogs == []
