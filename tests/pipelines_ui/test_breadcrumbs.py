"""Every page of a pipeline, a run or a step's output draws the same trail from the pipeline list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from runs.models import StepState
from tests.runs.conftest import make_pipeline, make_run, set_step

pytestmark = pytest.mark.django_db


def trail(html: str) -> list[str]:
    nav = html.split('<nav aria-label="breadcrumb">')[1].split("</nav>")[0]
    items = re.findall(r'<li class="breadcrumb-item[^"]*"[^>]*>(.*?)</li>', nav, re.S)
    return [re.sub(r"<[^>]+>", "", item).strip() for item in items]


def test_pipeline_run_and_output_pages_share_one_trail(client, alice, team):
    pipeline = make_pipeline(team, alice, name="<b>digits</b>")
    run = make_run(pipeline, alice)
    set_step(run, "train", state=StepState.SUCCEEDED)
    client.force_login(alice)
    top = ["Pipelines", team.name, "&lt;b&gt;digits&lt;/b&gt;"]
    pages = {
        reverse("pipeline_detail", args=[pipeline.pk]): top,
        reverse("pipeline_runs", args=[pipeline.pk]): top,
        reverse("run_create", args=[pipeline.pk]): [*top, "Run"],
        reverse("pipeline_delete", args=[pipeline.pk]): [*top, "Delete"],
        reverse("run_detail", args=[run.pk]): [*top, f"Run #{run.pk}"],
        reverse("run_step", args=[run.pk, "train"]): [*top, f"Run #{run.pk}"],
    }
    for url, expected in pages.items():
        html = client.get(url).content.decode()
        assert trail(html) == expected, url
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    nav = html.split('<nav aria-label="breadcrumb">')[1].split("</nav>")[0]
    assert f'href="{reverse("pipeline_detail", args=[pipeline.pk])}"' in nav
    assert "<b>digits" not in html.split("</nav>")[0].split('<nav aria-label="breadcrumb">')[-1]


def test_every_page_draws_its_trail_as_the_pipeline_pages_do():
    # The registry and data pages once drew Bootstrap's grey breadcrumb box where the rest of the app draws a bare line.
    templates = Path(settings.BASE_DIR) / "templates"
    (shared,) = re.findall(r'<ol class="(breadcrumb[^"]*)"', (templates / "_breadcrumbs.html").read_text())
    drawn = {
        str(path.relative_to(templates)): classes
        for path in templates.rglob("*.html")
        for classes in re.findall(r'<ol class="(breadcrumb[^"]*)"', path.read_text())
    }
    assert len(drawn) > 20
    assert {page: classes for page, classes in drawn.items() if classes != shared} == {}
