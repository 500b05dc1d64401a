"""runs/rows.py reads what the ORM reads: the same values, converted the same way, on SQLite and
PostgreSQL alike (CI runs this file on PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.utils import timezone

from pipelines_ui.models import PipelineVersion
from runs import rows
from runs.models import Artifact, ComputeTarget, Isolation, Run, StepOutput, StepRun, StepState
from tests.runs.conftest import make_pipeline, make_run, set_step


def concrete(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_select_reads_every_field_as_the_orm_does(alice, team):
    run = make_run(make_pipeline(team, alice), alice, epochs=7)
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now(), cancel_requested=True, secrets={"k": "v"})
    set_step(run, "prep", state=StepState.RUNNING, started_at=timezone.now(), fingerprint_parts={"a": [1, "b"]})

    (read,) = rows.select(Run, {"id": run.pk}, for_update=True)
    assert concrete(read) == concrete(Run.objects.get(pk=run.pk))
    assert read.inputs["epochs"] == 7 and read.cancel_requested is True and read.started_at.tzinfo is not None

    by_name = {s.name: s for s in rows.select(StepRun, {"run_id": run.pk})}
    assert {n: concrete(s) for n, s in by_name.items()} == {
        s.name: concrete(s) for s in StepRun.objects.filter(run=run)
    }
    assert by_name["prep"].fingerprint_parts == {"a": [1, "b"]}


def test_select_loads_only_the_fields_asked_for_and_the_rest_when_read(alice, team):
    run = make_run(make_pipeline(team, alice), alice)
    set_step(run, "prep", fingerprint_parts={"x": 1})
    (step,) = rows.select(StepRun, {"run_id": run.pk, "name": ["prep"]}, fields=("id", "name", "state"))
    assert step.get_deferred_fields() >= {"fingerprint_parts", "run_id"}
    assert step.fingerprint_parts == {"x": 1}  # one more query, as with the ORM's defer()


def test_select_matches_lists_and_nothing_for_an_empty_one(alice, team):
    run = make_run(make_pipeline(team, alice), alice)
    names = set(StepRun.objects.filter(run=run).values_list("name", flat=True))
    assert {s.name for s in rows.select(StepRun, {"run_id": run.pk, "name": sorted(names)})} == names
    assert {s.name for s in rows.select(StepRun, {"run_id": run.pk, "name": {"prep", "nope"}})} == {"prep"}
    assert rows.select(StepRun, {"run_id": run.pk, "name": []}) == []
    assert rows.select(StepRun, {"run_id": run.pk + 1000}) == []


def test_values_are_converted_like_the_orms(db):
    target = ComputeTarget.objects.create(
        name="gpu", queue="q-gpu", aliases=["a", "b"], isolation=Isolation.NONE, environment_variables={"X": "1"}
    )
    fields = ("aliases", "isolation", "environment_variables", "is_default")
    assert rows.values(ComputeTarget, fields, {"queue": "q-gpu"}) == [
        ComputeTarget.objects.values_list(*fields).get(pk=target.pk)
    ]
    (read,) = rows.select(ComputeTarget, {"queue": "q-gpu"})
    assert concrete(read) == concrete(target)


def test_run_outputs_are_the_outputs_of_the_named_steps_of_that_run_only(alice, team):
    pipeline = make_pipeline(team, alice)
    run, other = make_run(pipeline, alice), make_run(pipeline, alice)
    first = Artifact.objects.create(sha256="a" * 64, kind=Artifact.Kind.FOLDER)
    second = Artifact.objects.create(sha256="b" * 64, kind=Artifact.Kind.FILE)
    StepOutput.objects.create(step_run=StepRun.objects.get(run=run, name="prep"), name="out", artifact=first)
    StepOutput.objects.create(step_run=StepRun.objects.get(run=other, name="prep"), name="out", artifact=second)

    assert rows.run_outputs(run.pk, ["prep"]) == [("prep", "out", first.pk, first.sha256, first.kind)]
    assert rows.run_outputs(other.pk, ["prep", "train"]) == [("prep", "out", second.pk, second.sha256, second.kind)]
    assert rows.run_outputs(run.pk, []) == []


def test_select_with_parent_reads_the_row_and_the_parents_fields_asked_for_in_one_statement(
    alice, team, django_assert_num_queries
):
    run = make_run(make_pipeline(team, alice), alice, epochs=3)
    with transaction.atomic(), django_assert_num_queries(1) as captured:
        read = rows.select_with_parent(Run, run.pk, "version", ("id", "content_hash"), for_update=True)
    assert concrete(read) == concrete(Run.objects.get(pk=run.pk))
    version = PipelineVersion.objects.get(pk=run.version_id)
    assert (read.version.pk, read.version.content_hash) == (version.pk, version.content_hash)
    assert "spec" in read.version.get_deferred_fields()
    if connection.vendor == "postgresql":
        # The run's row only: a version is shared by every run of it, and never changes.
        assert f'FOR UPDATE OF "{Run._meta.db_table}"' in captured[0]["sql"]
    assert rows.select_with_parent(Run, run.pk + 1000, "version", ("id",)) is None


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_on_postgresql_a_statement_run_often_is_prepared_once_and_not_when_turned_off(monkeypatch, alice, team):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (SQLite caches its own)")
    run = make_run(make_pipeline(team, alice), alice)
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "prepare_threshold", None)
    for _ in range(8):
        assert rows.values(Run, ["state"], {"id": run.pk}) == [(run.state,)]
    assert not [s for s in _prepared() if '"runs_run"' in s]

    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "prepare_threshold", 5)
    for _ in range(8):
        assert rows.values(Run, ["state"], {"id": run.pk}) == [(run.state,)]
    assert [s for s in _prepared() if '"runs_run"' in s] == ['SELECT "state" FROM "runs_run" WHERE "id" = $1']
