"""Templates: publish and its versions, use with parameters, duplicate, follow a newer version."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from django.db import connection

from pipelines_ui import services, template_selectors
from pipelines_ui import template_services as ts
from pipelines_ui.models import Pipeline, Role, Team, Template, TemplateVersion, Visibility
from stepwise.spec import SpecError
from tests.conftest import make_user
from tests.runs.conftest import make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(team, alice):
    """alice's pipeline in team A (Data Science): prep -> train -> report, five parameters."""
    return make_pipeline(team, alice, name="digits")


@pytest.fixture
def team_b(db) -> Team:
    return Team.objects.create(name="Team B")


@pytest.fixture
def bob_b(team_b):
    return make_user("bobby", team_b, Role.EDITOR)


def publish(pipeline, user, **kwargs) -> TemplateVersion:
    defaults = {"title": "Digits", "description": "Train *digits*", "tags": "vision, ml", "visibility": "instance"}
    return ts.template_publish(pipeline=pipeline, user=user, **{**defaults, **kwargs})


def edit_step(pipeline, user, step: str, command: str, message: str = "edit"):
    spec = services.pipeline_working_spec(pipeline=pipeline)
    spec.jobs[step] = replace(spec.jobs[step], command=command)
    return services.pipeline_save_version(pipeline=pipeline, spec=spec, author=user, message=message)


# ---- publish ---------------------------------------------------------------------------


def test_publish_creates_the_template_and_its_first_version(source, alice):
    tv = publish(source, alice, parameter_descriptions={"epochs": "How long to train", "rate": ""})
    template = Template.objects.get()
    assert (template.title, template.team, template.pipeline, template.tags) == (
        "Digits",
        source.team,
        source,
        ["vision", "ml"],
    )
    assert template.latest_version == tv
    assert (tv.number, tv.pipeline_version, tv.published_by) == (1, source.latest_version, alice)
    assert tv.parameter_descriptions == {"epochs": "How long to train"}


def test_publishing_a_newer_version_adds_a_template_version(source, alice):
    first = publish(source, alice)
    edit_step(source, alice, "report", "python -c 'print(2)'")
    second = publish(source, alice, title="Digits 2", tags=["ml"])
    template = Template.objects.get()
    assert [v.number for v in template.versions.all()] == [2, 1]
    assert second.pipeline_version.number == 2 and first.pipeline_version.number == 1
    assert (template.latest_version, template.title, template.tags) == (second, "Digits 2", ["ml"])


def test_publishing_the_same_version_again_only_updates_metadata(source, alice):
    publish(source, alice)
    again = publish(source, alice, title="Renamed", visibility="team")
    template = Template.objects.get()
    assert template.versions.count() == 1 and again.number == 1
    assert (template.title, template.visibility) == ("Renamed", Visibility.TEAM)


def test_an_older_pipeline_version_than_the_published_one_is_refused(source, alice):
    edit_step(source, alice, "report", "python -c 'print(2)'")
    publish(source, alice)
    with pytest.raises(ts.TemplateError, match="publish v2 or a newer version"):
        publish(source, alice, version=source.versions.get(number=1))
    assert TemplateVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": "  "}, "title"),
        ({"tags": "ok, not ok!"}, "tags"),
        ({"tags": ",".join(f"t{i}" for i in range(11))}, "tags"),
        ({"visibility": "world"}, "visibility"),
        ({"parameter_descriptions": {"nope": "x"}}, "parameters"),
    ],
)
def test_bad_metadata_names_its_field_and_saves_nothing(source, alice, kwargs, field):
    with pytest.raises(ts.TemplateError) as info:
        publish(source, alice, **kwargs)
    assert info.value.field == field
    assert not Template.objects.exists()


def test_tags_are_lower_case_and_unique():
    assert ts.tags_clean(" Vision, ml,VISION ,, nlp-2 ") == ["vision", "ml", "nlp-2"]


# ---- use ----------------------------------------------------------------------------------


def test_use_clones_with_parameter_defaults_and_origin(source, alice, team_b, bob_b):
    tv = publish(source, alice)
    clone = ts.template_use(
        template_version=tv,
        team=team_b,
        name="my digits",
        values={"epochs": "7", "mode": "full", "verbose": True},
        user=bob_b,
    )
    clone.refresh_from_db()
    assert (clone.team, clone.name, clone.origin, clone.created_by) == (team_b, "my digits", tv, bob_b)
    spec = services.pipeline_working_spec(pipeline=clone)
    assert spec.inputs["epochs"].default == 7
    assert spec.inputs["mode"].default == "full"
    assert spec.inputs["verbose"].default is True
    assert spec.inputs["rate"].default == 0.5  # untouched
    original = services.pipeline_working_spec(pipeline=source)
    assert spec.jobs.keys() == original.jobs.keys() and spec.files == original.files
    assert clone.latest_version.message == "Created from template Digits v1"
    assert Template.objects.get().times_used == 1
    ts.template_use(template_version=tv, team=team_b, name="second", values={}, user=bob_b)
    assert Template.objects.get().times_used == 2


def test_a_bad_parameter_value_or_name_clash_creates_nothing(source, alice, team_b, bob_b):
    tv = publish(source, alice)
    with pytest.raises(SpecError, match="expected integer"):
        ts.template_use(template_version=tv, team=team_b, name="x", values={"epochs": "many"}, user=bob_b)
    Pipeline.objects.create(team=team_b, name="taken")
    with pytest.raises(ts.TemplateError, match="already has a pipeline named") as info:
        ts.template_use(template_version=tv, team=team_b, name="taken", values={}, user=bob_b)
    assert info.value.field == "name"
    assert list(team_b.pipelines.values_list("name", flat=True)) == ["taken"]
    assert Template.objects.get().times_used == 0


# ---- duplicate ----------------------------------------------------------------------------


def test_duplicate_within_and_across_teams(source, alice, team_b):
    Team.objects.get(pk=team_b.pk).memberships.create(user=alice, role=Role.EDITOR)
    same = ts.pipeline_duplicate(pipeline=source, team=source.team, name="digits copy", user=alice)
    other = ts.pipeline_duplicate(pipeline=source, team=team_b, name="digits", user=alice)
    for copy in (same, other):
        assert copy.latest_version.content_hash == source.latest_version.content_hash
        assert copy.latest_version.number == 1
        assert copy.latest_version.message == "Duplicated from digits v1"
    assert other.team == team_b and same.team == source.team
    with pytest.raises(ts.TemplateError, match="already has a pipeline named"):
        ts.pipeline_duplicate(pipeline=source, team=source.team, name="digits", user=alice)


# ---- following the template ---------------------------------------------------------------


@pytest.fixture
def clone(source, alice, team_b, bob_b):
    tv = publish(source, alice)
    return ts.template_use(template_version=tv, team=team_b, name="clone", values={"epochs": "9"}, user=bob_b)


def test_no_newer_version_until_one_is_published(clone, source, alice):
    assert ts.newer_version_for(clone) is None
    edit_step(source, alice, "report", "python -c 'print(\"v2 report\")'")
    assert ts.newer_version_for(clone) is None  # saved, not published
    v2 = publish(source, alice)
    assert ts.newer_version_for(clone) == v2


def test_apply_merges_the_template_change_and_keeps_the_clones_own(clone, source, alice, bob_b):
    edit_step(clone, bob_b, "prep", clone_prep := "python -c 'print(\"bob prep\")' ${{inputs.mode}} ${{outputs.data}}")
    edit_step(source, alice, "report", "python -c 'print(\"v2 report\")' ${{inputs.model}}")
    v2 = publish(source, alice)
    applied = ts.template_update_apply(pipeline=clone, user=bob_b)
    clone.refresh_from_db()
    assert clone.origin == v2 and applied.created
    assert clone.latest_version.message == "Applied template Digits v2"
    spec = services.pipeline_working_spec(pipeline=clone)
    assert spec.jobs["report"].command == "python -c 'print(\"v2 report\")' ${{inputs.model}}"
    assert spec.jobs["prep"].command == clone_prep
    assert spec.inputs["epochs"].default == 9
    assert ts.newer_version_for(clone) is None
    with pytest.raises(ts.TemplateError, match="already follows"):
        ts.template_update_apply(pipeline=clone, user=bob_b)


def test_apply_with_a_conflict_saves_nothing_and_names_the_part(clone, source, alice, bob_b):
    edit_step(clone, bob_b, "report", "python -c 'print(\"bob\")' ${{inputs.model}}")
    edit_step(source, alice, "report", "python -c 'print(\"alice\")' ${{inputs.model}}")
    v2 = publish(source, alice)
    before = clone.latest_version.number
    with pytest.raises(ts.TemplateConflict) as info:
        ts.template_update_apply(pipeline=clone, user=bob_b)
    assert [p.label for p in info.value.parts] == ["step report"]
    assert "command" in info.value.parts[0].change and "command" in info.value.mine[0].change
    assert (info.value.origin.number, info.value.newer) == (1, v2)
    clone.refresh_from_db()
    assert clone.latest_version.number == before and clone.origin.number == 1


# ---- visibility ----------------------------------------------------------------------------


def test_visibility_team_or_instance(source, alice, bob_b, charlie):
    tv = publish(source, alice, visibility="team", tags="secret-tag")
    assert template_selectors.template_for_user(alice, tv.template_id) is not None
    assert template_selectors.template_for_user(charlie, tv.template_id) is None
    assert list(template_selectors.template_search(user=bob_b)) == []
    assert template_selectors.tag_cloud(user=bob_b) == []
    publish(source, alice, visibility="instance", tags="secret-tag")
    assert list(template_selectors.template_search(user=bob_b, tag="secret-tag")) == [tv.template]
    assert template_selectors.tag_cloud(user=bob_b) == [("secret-tag", 1)]


def test_search_and_tag_filter(source, alice, team, bob_b):
    publish(source, alice, title="Digits", description="handwritten", tags="vision, ml")
    other = make_pipeline(team, alice, name="text")
    publish(other, alice, title="Sentiment", description="reviews", tags="nlp, ml")
    titles = lambda **kw: sorted(t.title for t in template_selectors.template_search(user=bob_b, **kw))  # noqa: E731
    assert titles() == ["Digits", "Sentiment"]
    assert titles(tag="ml") == ["Digits", "Sentiment"]
    assert titles(tag="vision") == ["Digits"]
    assert titles(tag="visio") == []  # a tag matches whole
    assert titles(query="REVIEWS") == ["Sentiment"]
    assert titles(query="nlp") == ["Sentiment"]
    assert titles(query="nlp", tag="vision") == []
    assert template_selectors.tag_cloud(user=bob_b) == [("ml", 2), ("nlp", 1), ("vision", 1)]


@pytest.mark.django_db(transaction=True)
def test_two_uses_at_once_count_twice(source, alice, team_b, bob_b):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks")
    tv = publish(source, alice)
    errors = []

    def use(name):
        try:
            ts.template_use(template_version=tv, team=team_b, name=name, values={}, user=bob_b)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=use, args=(f"n{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Template.objects.get().times_used == 2
