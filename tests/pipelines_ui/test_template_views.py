"""The templates pages: who sees and does what, and what the pages show."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.test import Client
from django.urls import reverse

from pipelines_ui import services
from pipelines_ui import template_services as ts
from pipelines_ui.models import Pipeline, Role, Team, Template
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db

HOSTILE = "Read **me**.\n\n<script>alert('x')</script>\n\n[click](javascript:alert(1)) [docs](https://example.com)"


def client_for(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def source(team, alice):
    return make_pipeline(team, alice, name="digits")


@pytest.fixture
def team_b(db):
    return Team.objects.create(name="Team B")


@pytest.fixture
def bea(team_b):
    """Editor of team B."""
    return make_user("bea", team_b, Role.EDITOR)


@pytest.fixture
def carol(team_b):
    """Viewer of team B."""
    return make_user("carol", team_b, Role.VIEWER)


def publish(pipeline, user, **kwargs):
    defaults = {"title": "Digits", "description": HOSTILE, "tags": "vision", "visibility": "instance"}
    return ts.template_publish(pipeline=pipeline, user=user, **{**defaults, **kwargs})


def edit_step(pipeline, user, step, command):
    spec = services.pipeline_working_spec(pipeline=pipeline)
    spec.jobs[step] = replace(spec.jobs[step], command=command)
    return services.pipeline_save_version(pipeline=pipeline, spec=spec, author=user, message="edit")


# ---- gallery and template page ----------------------------------------------------------------


def test_gallery_empty_state_says_how_to_publish(alice):
    response = client_for(alice).get(reverse("template_gallery"))
    assert response.status_code == 200
    assert "No templates yet" in response.content.decode()
    assert "Publish as template" in response.content.decode()


def test_gallery_cards_and_tag_filter(source, alice, bea):
    publish(source, alice, tags="vision, ml")
    body = client_for(bea).get(reverse("template_gallery") + "?tag=vision").content.decode()
    assert 'class="card shadow-sm h-100 template-card"' in body
    assert "Digits" in body and source.team.name in body
    assert "<svg" in body  # the small graph
    assert "<code>epochs</code>" in body
    assert "used 0 times" in body
    assert 'href="/templates/?tag=ml"' in body
    assert "<script>alert" not in body
    body = client_for(bea).get(reverse("template_gallery") + "?tag=nlp").content.decode()
    assert "No template matches" in body and "template-card" not in body


def test_template_page_renders_the_description_safely(source, alice, bea):
    tv = publish(source, alice, parameter_descriptions={"epochs": "Passes over the data"})
    response = client_for(bea).get(reverse("template_detail", args=[tv.template_id]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<strong>me</strong>" in body
    assert "&lt;script&gt;alert" in body and "<script>alert" not in body
    assert "javascript:" not in body
    assert '<a href="https://example.com" rel="noopener noreferrer">docs</a>' in body
    assert "Passes over the data" in body
    assert 'id="use-template"' in body


def test_a_team_only_template_is_404_for_outsiders(source, alice, bob, charlie):
    tv = publish(source, alice, visibility="team")
    urls = [
        reverse("template_detail", args=[tv.template_id]),
        reverse("template_use", args=[tv.template_id]),
        reverse("template_version_diff", args=[tv.template_id, 1]),
    ]
    for url in urls:
        assert client_for(charlie).get(url).status_code == 404
        assert client_for(bob).get(url).status_code == 200
    assert "Digits" not in client_for(charlie).get(reverse("template_gallery")).content.decode()


def test_version_diff_between_template_versions(source, alice, bea):
    tv = publish(source, alice)
    edit_step(source, alice, "report", "python -c 'print(42)' ${{inputs.model}}")
    publish(source, alice)
    body = client_for(bea).get(reverse("template_version_diff", args=[tv.template_id, 2])).content.decode()
    assert "What changed from v1 to v2" in body
    assert "print(42)" in body
    page = client_for(bea).get(reverse("template_detail", args=[tv.template_id])).content.decode()
    assert "Diff from previous" in page


# ---- publish ----------------------------------------------------------------------------------


def test_only_admins_publish(source, alice, bob, viewer, charlie):
    url = reverse("template_publish", args=[source.pk])
    assert client_for(charlie).get(url).status_code == 404
    assert client_for(viewer).get(url).status_code == 403
    assert client_for(bob).get(url).status_code == 403
    assert client_for(bob).post(url, {"title": "x", "visibility": "team", "version": 1}).status_code == 403
    assert not Template.objects.exists()
    response = client_for(alice).get(url)
    assert response.status_code == 200
    assert 'name="param_epochs"' in response.content.decode()


def test_publish_preview_then_publish(source, alice):
    url = reverse("template_publish", args=[source.pk])
    data = {"title": "Digits", "description": HOSTILE, "tags": "Vision, ML", "visibility": "instance", "version": 1}
    response = client_for(alice).post(url, {**data, "param_epochs": "Passes", "preview": "1"})
    body = response.content.decode()
    assert response.status_code == 200 and 'id="description-preview"' in body
    assert "<strong>me</strong>" in body and "<script>alert" not in body
    assert not Template.objects.exists()
    response = client_for(alice).post(url, {**data, "param_epochs": "Passes", "publish": "1"})
    template = Template.objects.get()
    assert response.status_code == 302 and response.url == reverse("template_detail", args=[template.pk])
    assert template.tags == ["vision", "ml"]
    assert template.latest_version.parameter_descriptions == {"epochs": "Passes"}


def test_publish_with_bad_tags_is_a_form_error(source, alice):
    url = reverse("template_publish", args=[source.pk])
    response = client_for(alice).post(url, {"title": "D", "tags": "a b!", "visibility": "team", "version": 1})
    assert response.status_code == 400
    assert "may hold only letters" in response.content.decode()
    assert not Template.objects.exists()


# ---- use ------------------------------------------------------------------------------------


def test_use_form_is_typed_and_prefilled(source, alice, bea):
    tv = publish(source, alice, parameter_descriptions={"epochs": "Passes over the data"})
    body = client_for(bea).get(reverse("template_use", args=[tv.template_id])).content.decode()
    assert 'type="number" name="in_epochs"' in body and 'value="3"' in body
    assert 'name="in_mode"' in body and '<option value="fast" selected>' in body
    assert "Passes over the data" in body
    assert "Team B" in body and "Data Science" not in body  # bea edits team B only


def test_use_creates_the_clone(source, alice, bea, team_b):
    tv = publish(source, alice)
    url = reverse("template_use", args=[tv.template_id])
    data = {"team": team_b.pk, "name": "bea digits", "in_epochs": "5", "in_rate": "0.1", "in_mode": "full"}
    response = client_for(bea).post(url, data)
    clone = Pipeline.objects.get(team=team_b)
    assert response.status_code == 302 and response.url == clone.get_absolute_url()
    assert clone.origin == tv
    spec = services.pipeline_working_spec(pipeline=clone)
    assert (spec.inputs["epochs"].default, spec.inputs["rate"].default, spec.inputs["mode"].default) == (5, 0.1, "full")
    # Again with the same name: a form error, nothing more created.
    response = client_for(bea).post(url, data)
    assert response.status_code == 400
    assert "already has a pipeline named" in response.content.decode()
    response = client_for(bea).post(url, {**data, "name": "other", "in_epochs": "lots"})
    assert response.status_code == 400
    assert "lots" in response.content.decode()
    assert Pipeline.objects.filter(team=team_b).count() == 1
    assert Template.objects.get().times_used == 1


def test_viewers_cannot_use_templates(source, alice, carol, team_b, team):
    tv = publish(source, alice)
    url = reverse("template_use", args=[tv.template_id])
    assert client_for(carol).get(url).status_code == 403
    for page in (reverse("template_gallery"), reverse("template_detail", args=[tv.template_id])):
        body = client_for(carol).get(page).content.decode()
        assert "Digits" in body and url not in body
    # An editor elsewhere naming a team where they only view.
    dora = make_user("dora", team, Role.EDITOR)
    team_b.memberships.create(user=dora, role=Role.VIEWER)
    assert client_for(dora).post(url, {"team": team_b.pk, "name": "x"}).status_code == 403
    assert not Pipeline.objects.filter(team=team_b).exists()


# ---- duplicate -------------------------------------------------------------------------------


def test_duplicate_across_teams(source, alice, team_b, viewer):
    team_b.memberships.create(user=alice, role=Role.EDITOR)
    url = reverse("pipeline_duplicate", args=[source.pk])
    page = client_for(alice).get(reverse("pipeline_detail", args=[source.pk])).content.decode()
    assert 'id="duplicate-pipeline"' in page
    response = client_for(alice).post(url, {"team": team_b.pk, "name": "digits"})
    copy = Pipeline.objects.get(team=team_b)
    assert response.status_code == 302 and response.url == copy.get_absolute_url()
    assert copy.latest_version.content_hash == source.latest_version.content_hash
    assert client_for(viewer).get(url).status_code == 403  # a viewer with no team to put it in
    assert 'id="duplicate-pipeline"' not in client_for(viewer).get(source.get_absolute_url()).content.decode()


# ---- the clone's page and applying updates -----------------------------------------------------


@pytest.fixture
def clone(source, alice, team_b, bea):
    tv = publish(source, alice)
    return ts.template_use(template_version=tv, team=team_b, name="clone", values={}, user=bea)


def test_clone_page_shows_origin_and_newer_version(clone, source, alice, bea, carol):
    page = client_for(bea).get(clone.get_absolute_url()).content.decode()
    assert "From template" in page and "Digits</a> v1" in page
    assert "Newer version available" not in page
    edit_step(source, alice, "report", "python -c 'print(42)' ${{inputs.model}}")
    publish(source, alice)
    page = client_for(bea).get(clone.get_absolute_url()).content.decode()
    assert "Newer version available" in page and 'id="template-apply"' in page
    page = client_for(carol).get(clone.get_absolute_url()).content.decode()
    assert "Newer version available" in page
    for button in ('id="template-apply"', 'id="run-button"', 'id="add-step"', 'id="publish-template"'):
        assert button not in page
    diff = client_for(carol).get(reverse("template_update", args=[clone.pk])).content.decode()
    assert "print(42)" in diff and 'id="apply-update"' not in diff


def test_apply_by_url(clone, source, alice, bea, carol, charlie):
    edit_step(source, alice, "report", "python -c 'print(42)' ${{inputs.model}}")
    publish(source, alice)
    url = reverse("template_update", args=[clone.pk])
    assert client_for(charlie).post(url).status_code == 404
    assert client_for(carol).post(url).status_code == 403
    clone.refresh_from_db()
    assert clone.origin.number == 1
    response = client_for(bea).post(url)
    assert response.status_code == 302
    clone.refresh_from_db()
    assert clone.origin.number == 2 and clone.latest_version.message == "Applied template Digits v2"


def test_apply_conflict_is_reported(clone, source, alice, bea):
    edit_step(clone, bea, "report", "python -c 'print(1)' ${{inputs.model}}")
    edit_step(source, alice, "report", "python -c 'print(2)' ${{inputs.model}}")
    publish(source, alice)
    response = client_for(bea).post(reverse("template_update", args=[clone.pk]))
    body = response.content.decode()
    assert response.status_code == 409
    assert "Not applied" in body and "Step report" in body
    clone.refresh_from_db()
    assert clone.origin.number == 1 and clone.latest_version.number == 2
